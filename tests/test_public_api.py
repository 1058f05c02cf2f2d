"""The top-level names the README's examples use."""

import robustreid


def test_top_level_names_are_the_library_functions():
    from robustreid.config import build_config
    from robustreid.datasets import dataset_from_spec, load_dataset
    from robustreid.evaluate import FeatureExtractor
    from robustreid.metrics import evaluate_features, evaluate_rank
    from robustreid.zoo import list_zoo, load_pretrained

    assert robustreid.load_dataset is load_dataset and robustreid.FeatureExtractor is FeatureExtractor
    assert robustreid.evaluate_rank is evaluate_rank and robustreid.evaluate_features is evaluate_features
    assert robustreid.build_config is build_config and robustreid.dataset_from_spec is dataset_from_spec
    assert robustreid.load_pretrained is load_pretrained and robustreid.list_zoo is list_zoo
    assert set(robustreid.__all__) >= {"build_model", "load_dataset", "FeatureExtractor", "evaluate_rank",
                                       "load_pretrained", "list_zoo"}
    for name in robustreid.__all__:
        assert getattr(robustreid, name) is not None
    try:
        robustreid.no_such_name
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("unknown attributes must raise AttributeError")
