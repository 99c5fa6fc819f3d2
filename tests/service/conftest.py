"""A tiny privacy bundle made by the project's own code, shared by the service tests."""

import pytest

from privhead.data.synthetic import write_synthetic_head
from privhead.privacy.protect import protect_dataset


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    head = write_synthetic_head(root / "head", seed=2, n_views=8, resolution=32, supersample=1)
    return protect_dataset(head, root / "bundle", detector="none").bundle
