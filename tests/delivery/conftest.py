"""The delivery tests' loopback SAS platform: a throwaway PKI per module, a receiver with
mutual TLS per test (``receiver.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.delivery.receiver import Pki, Receiver, make_pki, receiving


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def receiver(pki: Pki) -> Iterator[Receiver]:
    with receiving(pki) as r:
        yield r
