"""scripts/make_weights.py's stage bookkeeping on a hand-made work folder (no training): which stages run
again, and where a card's sections come from when an earlier stage's folder was not kept."""

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def mw(load_script):
    return load_script("scripts/make_weights.py")


def _finished(folder: Path, provenance: dict, epochs: int = 2, iterations: int = 10) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text("{}")
    (folder / "provenance.json").write_text(json.dumps(provenance))
    (folder / "train.log").write_text(f"plan: {epochs} epochs x {iterations} iterations (lr 0.03)\n")
    rows = [{"kind": "train", "epoch": e, "seconds": 60.0} for e in range(epochs)]
    rows.append({"kind": "eval", "epoch": epochs - 1, "rank1": 50.0, "mAP": 40.0})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _sets(mw, work: Path) -> dict:
    sets = {}
    for seed in mw.all_seeds():
        root = work / f"data_s{seed}"
        root.mkdir(parents=True)
        (root / "synth.json").write_text(json.dumps({"counts": {"bounding_box_train": 10}}))
        sets[f"train_s{seed}"] = (root, ["robustreid", "synth", str(root), "--seed", str(seed)])
    return sets


def test_stages_and_seeds_follow_continued_stages(mw, tmp_path):
    stages = mw.CONTINUED_STAGES["robustreid_1x"]
    assert len(stages) == 2 and set(stages[0][0]) < set(stages[1][0])  # each stage's union is wider
    assert mw.model_seeds("robustreid_1x") == stages[1][0]
    assert not set(mw.all_seeds()) & {*mw.DEMO_SEEDS, mw.VALIDATION_SEED}  # never the demo's or validation's
    assert mw.stage_folder("hacnn", tmp_path, 1) == tmp_path / "hacnn_s3"
    assert mw.shipped_checkpoint("robustreid_1x", tmp_path) == tmp_path / "robustreid_1x_s3" / "last.pt"
    before = mw.shipped_checkpoint("robustreid_1x", tmp_path, False)  # what continued stage 1 starts from
    assert before == tmp_path / "robustreid_1x_swag" / "last.pt"
    assert mw.last_finished("robustreid_1x", tmp_path) is None  # a fresh clone: every stage runs
    (tmp_path / "robustreid_1x_s2").mkdir()
    (tmp_path / "robustreid_1x_s2" / "last.pt").write_bytes(b"")  # unfinished: it resumes, nothing skipped
    assert mw.last_finished("robustreid_1x", tmp_path) is None
    _finished(tmp_path / "robustreid_1x_s3", {"command": "robustreid train --out s3"})
    assert mw.last_finished("robustreid_1x", tmp_path) == 1


def test_the_card_takes_the_stages_not_kept_from_the_card_shipped_before(mw, tmp_path):
    name, seeds1 = "robustreid_1x", list(mw.CONTINUED_STAGES["robustreid_1x"][0][0])
    recorded = {"training": {"command": "robustreid train --out main", "steps": 2244},
                "swag_stage": {"command": "robustreid swag", "steps": 1530},
                "continued_stage": {"command": "robustreid train --out s2", "steps": 1859,
                                    "generator_seeds": seeds1}}  # a card of one stage, under the old key
    _finished(tmp_path / f"{name}_s3", {"command": "robustreid train --out s3", "wall_seconds": 120.0})
    sets = _sets(mw, tmp_path)
    mw.check_records(name, tmp_path, 1, recorded, None, None)  # every missing stage has its record
    provenance = mw.continued_stages(name, tmp_path, amp=False, first=1)  # stage 2 is reused, not run
    assert provenance[0] is None and provenance[1]["command"] == "robustreid train --out s3"
    card = mw.card(name, tmp_path, sets, None, {"demo_mean": {}}, None, provenance, recorded)
    assert card["training"]["steps"] == 2244 and card["training"]["record"] == mw.KEPT
    assert card["swag_stage"]["record"] == mw.KEPT
    first, second = card["continued_stages"]
    assert first["steps"] == 1859 and first["record"] == mw.KEPT
    assert second["steps"] == 20 and second["epochs"] == 2 and "record" not in second  # from its own folder
    assert second["generator_seeds"] == list(mw.CONTINUED_STAGES[name][1][0])
    assert card["data"]["identities"] == 40 * len(mw.model_seeds(name))

    # a stage kept in its folder is described from it, not from the record
    _finished(tmp_path / f"{name}_s2", {"command": "robustreid train --out s2 (here)"}, epochs=3)
    kept = mw.continued_stages(name, tmp_path, amp=False, first=1)[0]
    assert kept["command"] == "robustreid train --out s2 (here)"


def test_a_missing_or_mismatched_record_stops_before_anything_runs(mw, tmp_path):
    name = "robustreid_1x"
    with pytest.raises(SystemExit, match="'training' has neither a run folder nor a record"):
        mw.check_records(name, tmp_path, 1, {}, None, None)
    wrong = {"training": {"steps": 1}, "swag_stage": {"steps": 1},
             "continued_stages": [{"steps": 1, "generator_seeds": [10, 11]}]}
    with pytest.raises(SystemExit, match=r"continued stage 1 trained on seeds \[10, 11\]"):
        mw.check_records(name, tmp_path, 1, wrong, None, None)
