"""The ledger tests' fixture: a fresh funded chain with fast parameters."""

import pytest

from p2pchain.testing import FAST_PARAMS, FundedChain, funded_chain


@pytest.fixture
def chain() -> FundedChain:
    return funded_chain(3, params=FAST_PARAMS)
