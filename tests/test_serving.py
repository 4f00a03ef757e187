"""fhir_server/serving.py's pieces that need no running server (tests/e2e/test_tls.py runs
one): the TLS context and the open-files limit."""

from __future__ import annotations

import resource
import ssl
from collections.abc import Iterator

import pytest

from auth import devcerts
from fhir_server.serving import raise_open_files_limit, tls_context
from fhir_server.settings import Settings


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> devcerts.DevCertFiles:
    return devcerts.write_dev_certs(tmp_path_factory.mktemp("certs"))


def test_tls_context_asks_for_client_certificates(files: devcerts.DevCertFiles) -> None:
    settings = Settings(
        tls_cert_file=files.server_cert,
        tls_key_file=files.server_key,
        tls_client_ca_file=files.ca,
        tls_crl_files=[files.crl],
    )
    context = tls_context(settings)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert context.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    without_ca = tls_context(
        Settings(tls_cert_file=files.server_cert, tls_key_file=files.server_key)
    )
    assert without_ca.verify_mode == ssl.CERT_NONE


def test_tls_context_refuses_half_a_setup(files: devcerts.DevCertFiles) -> None:
    with pytest.raises(ValueError, match="both needed"):
        tls_context(Settings(tls_cert_file=files.server_cert))
    with pytest.raises(ValueError, match="needs FHIR_TLS_CLIENT_CA_FILE"):
        tls_context(
            Settings(
                tls_cert_file=files.server_cert,
                tls_key_file=files.server_key,
                tls_crl_files=[files.crl],
            )
        )


@pytest.fixture
def lowered_limit() -> Iterator[int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard open-files limit is {hard}: nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_open_files_limit_is_raised_to_the_hard_limit(lowered_limit: int) -> None:
    raised = raise_open_files_limit(1000)
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == raised
    if lowered_limit != resource.RLIM_INFINITY:
        assert raised == lowered_limit
    else:
        assert raised >= 1000
