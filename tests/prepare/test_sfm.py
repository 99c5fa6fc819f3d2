"""The structure-from-motion settings reach COLMAP (a stand-in module records them)."""

from types import SimpleNamespace

import pytest

from privhead.errors import PrivheadError
from privhead.prepare import sfm
from privhead.prepare.layout import PrepareConfig, prepare_dataset, sfm_intrinsics


class _Options(SimpleNamespace):
    """Any attribute may be set; nested option groups exist where COLMAP has them."""

    def __init__(self):
        super().__init__(sift=SimpleNamespace(), mapper=SimpleNamespace())
        self.mapper.bundle_adjustment = SimpleNamespace()


def _fake_pycolmap(seen: dict):
    def mapping(name):
        def run(database, image_dir, out, options):
            seen[name] = options
            return {}

        return run

    return SimpleNamespace(
        FeatureExtractionOptions=_Options,
        ImageReaderOptions=_Options,
        FeatureMatchingOptions=_Options,
        TwoViewGeometryOptions=_Options,
        IncrementalPipelineOptions=_Options,
        GlobalPipelineOptions=_Options,
        CameraMode=SimpleNamespace(SINGLE="single"),
        Device=SimpleNamespace(cpu="cpu"),
        extract_features=lambda *a, **k: None,
        match_exhaustive=lambda *a, **k: None,
        incremental_mapping=mapping("incremental"),
        global_mapping=mapping("global"),
    )


@pytest.mark.parametrize("setting", ["refine", "focal", "fixed"])
def test_intrinsics_setting_reaches_both_mappers(tmp_path, setting):
    images = tmp_path / "images"
    images.mkdir()
    cfg = sfm.SfmConfig(
        image_dir=str(images), work_dir=str(tmp_path), **sfm_intrinsics(setting, 800.0)
    )
    config = vars(cfg) | {"attempts": None}
    seen = {}
    fake = _fake_pycolmap(seen)
    for attempt in sfm.SFM_ATTEMPTS:
        attempt = vars(attempt).copy()
        result = sfm._attempt(fake, config, attempt, tmp_path / "db", tmp_path / "out", False)
        assert result == (None, 0)  # nothing reconstructed: reported, not raised
    incremental, glob = seen["incremental"], seen["global"].mapper.bundle_adjustment
    assert incremental.ba_refine_focal_length == glob.refine_focal_length == (setting != "fixed")
    assert incremental.ba_refine_extra_params == glob.refine_extra_params == (setting == "refine")
    assert incremental.random_seed == seen["global"].random_seed == 0


def test_fixed_without_a_focal_prior_refines_the_focal_length():
    assert sfm_intrinsics("fixed", None) == {"refine_focal": True, "refine_distortion": False}


def test_unknown_intrinsics_setting_is_one_sentence_and_writes_nothing(tmp_path):
    out = tmp_path / "dataset"
    with pytest.raises(PrivheadError, match="Unknown intrinsics setting 'guess'"):
        prepare_dataset(tmp_path / "photos", out, PrepareConfig(intrinsics="guess"))
    assert not out.exists() and list(tmp_path.iterdir()) == []
