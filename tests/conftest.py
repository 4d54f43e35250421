import os
import pytest
from neurocomp.manifest import dataset_dir, DatasetNotAvailable


@pytest.fixture(scope="session")
def kindalova2021():
    "The kindalova2021 reference data folder; under CI a missing dataset is a failure, never a skip."
    try:
        return dataset_dir("kindalova2021")
    except DatasetNotAvailable as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(str(e))
