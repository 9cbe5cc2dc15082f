"""STRS: official numbers, the official evaluator's quirks, the reference variant, bad input."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import vrme.metrics.strs as strs_mod
from flows.cli import app
from tests.helpers.strs_oracle import evaluate_loop
from vrme.errors import DataError
from vrme.metrics.strs import JSON_KEYS, evaluate_strs, input_warnings, read_strs_csv

FIX = Path(__file__).parent / "fixtures" / "strs"
SAMPLE = FIX / "official_sample"
RANDOM_CASES = sorted((FIX / "official_random").glob("case_*"))
COLS = ["subject", "video", "onset", "offset", "emotion"]


def table(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=COLS)


def assert_numbers(actual: dict, expected: dict, tol: float = 1e-9) -> None:
    for key, want in expected.items():
        got = actual[key]
        if want is None or (isinstance(want, float) and math.isnan(want)):
            assert got is None or math.isnan(got), key
        elif isinstance(want, int):
            assert got == want, (key, got, want)
        else:
            assert got == pytest.approx(want, abs=tol, rel=0), (key, got, want)


# ---------------------------------------------------------------------------------------------
# The official output


def test_official_sample_matches_official_output():
    expected = json.loads((SAMPLE / "expected.json").read_text())
    args = json.loads((SAMPLE / "args.json").read_text())
    res = evaluate_strs(read_strs_csv(SAMPLE / "pred.csv"), read_strs_csv(SAMPLE / "gt.csv"),
                        args["emotions"])
    assert_numbers(res.to_dict(), expected)
    # Bit-identical, not just close: the default emotion order (first appearance in the ground
    # truth) is one the official script's set iteration produces.
    for key, want in expected.items():
        assert getattr(res, key) == want, key
    assert res.emotions == ("happiness", "others", "disgust", "repression", "surprise")
    assert list(res.to_dict()) == list(JSON_KEYS)
    assert len(res.pairs) == res.spot_tp == 159
    assert set(res.pairs.columns) >= {"pred_row", "gt_row", "iou", "pred_emotion", "gt_emotion"}
    assert (res.pairs["iou"] >= 0.5).all()


@pytest.mark.parametrize("case", RANDOM_CASES, ids=lambda p: p.name)
def test_random_cases_match_official_and_paper_outputs(case: Path):
    pred, gt = read_strs_csv(case / "pred.csv"), read_strs_csv(case / "gt.csv")
    emotions = json.loads((case / "args.json").read_text())["emotions"]
    official = evaluate_strs(pred, gt, emotions)
    for key, want in json.loads((case / "expected.json").read_text()).items():
        assert getattr(official, key) == pytest.approx(want, abs=1e-12, rel=0), key
    reference = evaluate_strs(pred, gt, variant="reference")
    for key, want in json.loads((case / "expected_reference.json").read_text()).items():
        assert getattr(reference, key) == pytest.approx(want, abs=1e-12, rel=0), key


def test_random_cases_cover_the_quirks():
    """The official-output fixtures exercise what the hand cases below check in isolation."""
    multi = unscored_pred = unscored_gt = 0
    for case in RANDOM_CASES:
        res = evaluate_strs(read_strs_csv(case / "pred.csv"), read_strs_csv(case / "gt.csv"))
        multi += int(res.pairs["pred_row"].duplicated().sum())
        unscored_pred += res.pred_unscored
        unscored_gt += res.gt_unscored
    assert multi > 0 and unscored_pred > 0 and unscored_gt > 0


# ---------------------------------------------------------------------------------------------
# Hand-worked quirks (official)


def test_one_prediction_claims_two_ground_truths():
    gt = table(("1", "v1", 0, 9, "negative"), ("1", "v1", 10, 19, "positive"))
    pred = table(("1", "v1", 0, 19, "negative"))  # IoU 10/20 = 0.5 with each
    res = evaluate_strs(pred, gt, ["negative", "positive"])
    assert (res.spot_tp, res.spot_fp, res.spot_fn) == (2, 0, 0)
    assert list(res.pairs["gt_row"]) == [0, 1] and list(res.pairs["pred_row"]) == [0, 0]
    assert res.pairs["iou"].tolist() == [0.5, 0.5]
    # negative: gt [1,0] pred [1,1] -> P 1/2, R 1; positive: gt [0,1] pred [0,0] -> 0, 0
    assert res.analysis_precision == 0.25 and res.analysis_recall == 0.5
    assert res.analysis_f1 == pytest.approx(1 / 3) and res.analysis_uf1 == pytest.approx(1 / 3)
    assert res.strs == pytest.approx(1 / 3)


def test_table_order_decides_which_prediction_claims():
    gt = table(("1", "v1", 0, 9, "positive"), ("1", "v2", 0, 9, "negative"))
    wrong_first = table(("1", "v1", 0, 9, "negative"), ("1", "v1", 1, 9, "positive"),
                        ("1", "v2", 0, 9, "negative"))
    res = evaluate_strs(wrong_first, gt, ["negative", "positive"])
    assert (res.spot_tp, res.spot_fp, res.spot_fn) == (2, 1, 0)
    assert res.spot_f1 == pytest.approx(0.8)
    assert res.analysis_f1 == pytest.approx(1 / 3)
    assert res.strs == pytest.approx(0.8 / 3)
    right_first = wrong_first.iloc[[1, 0, 2]]
    res2 = evaluate_strs(right_first, gt, ["negative", "positive"])
    assert (res2.spot_tp, res2.spot_fp, res2.spot_fn) == (2, 1, 0)
    assert res2.analysis_f1 == 1.0 and res2.strs == pytest.approx(0.8)


def test_subject_without_predictions_adds_no_false_negatives():
    gt = table(("1", "v1", 0, 9, "negative"), ("1", "v1", 50, 59, "positive"),
               ("2", "v1", 0, 9, "positive"), ("2", "v2", 0, 9, "negative"))
    pred = table(("1", "v1", 0, 9, "negative"), ("1", "v1", 50, 59, "positive"))
    res = evaluate_strs(pred, gt)
    assert (res.spot_tp, res.spot_fp, res.spot_fn) == (2, 0, 0)
    assert res.gt_unscored == 2 and res.strs == 1.0


def test_prediction_in_video_without_ground_truth_is_not_a_false_positive():
    gt = table(("1", "v1", 0, 9, "negative"), ("1", "v1", 50, 59, "positive"))
    pred = table(("1", "v1", 0, 9, "negative"), ("1", "v1", 50, 59, "positive"),
                 ("1", "v9", 0, 9, "negative"),  # video v9 has no ground truth
                 ("3", "v1", 0, 9, "negative"))  # subject 3 has no ground truth at all
    res = evaluate_strs(pred, gt)
    assert (res.spot_tp, res.spot_fp, res.spot_fn) == (2, 0, 0)
    assert res.pred_unscored == 2 and res.strs == 1.0
    # The same prediction in a video that has ground truth is a false positive.
    res2 = evaluate_strs(pd.concat([pred, table(("1", "v1", 200, 210, "negative"))]), gt)
    assert res2.spot_fp == 1


def test_class_that_never_occurs_counts_as_zero():
    gt = table(("1", "v1", 0, 9, "negative"), ("1", "v1", 50, 59, "positive"))
    pred = table(("1", "v1", 0, 9, "negative"), ("1", "v1", 50, 59, "positive"))
    res = evaluate_strs(pred, gt, ["negative", "positive", "surprise"])
    row = res.per_emotion.set_index("emotion").loc["surprise"]
    assert bool(row["degenerate"]) and (row["tp"], row["fp"], row["fn"]) == (0, 0, 0)
    assert res.analysis_precision == pytest.approx(2 / 3)
    assert res.analysis_recall == pytest.approx(2 / 3)
    assert res.analysis_f1 == pytest.approx(2 / 3) and res.analysis_uf1 == pytest.approx(2 / 3)
    assert res.strs == pytest.approx(2 / 3)


def test_all_pairs_one_correct_class_is_degenerate_and_strs_undefined():
    """Only one class in both vectors -> TP = FP = FN = 0 -> analysis F1 = 0/0 = NaN."""
    gt = table(("1", "v1", 0, 9, "negative"))
    pred = table(("1", "v1", 0, 9, "negative"))
    res = evaluate_strs(pred, gt)
    assert res.spot_f1 == 1.0
    assert res.per_emotion["degenerate"].all()
    assert math.isnan(res.analysis_f1) and math.isnan(res.strs)
    assert res.to_dict()["strs"] is None and res.to_dict()["analysis_f1"] is None
    assert json.loads(json.dumps(res.to_dict()))["strs"] is None


def test_no_true_positive_at_all_gives_nan_not_a_crash():
    gt = table(("1", "v1", 0, 9, "negative"))
    pred = table(("1", "v1", 100, 109, "negative"))
    res = evaluate_strs(pred, gt)
    assert (res.spot_tp, res.spot_fp, res.spot_fn) == (0, 1, 1)
    assert res.spot_f1 == 0 and math.isnan(res.strs) and res.pairs.empty


def test_only_pairs_with_analysed_ground_truth_count():
    gt = table(("1", "v1", 0, 9, "others"), ("1", "v1", 50, 59, "negative"),
               ("1", "v1", 100, 109, "positive"))
    pred = table(("1", "v1", 0, 9, "negative"), ("1", "v1", 50, 59, "negative"),
                 ("1", "v1", 100, 109, "positive"))
    all_em = evaluate_strs(pred, gt)  # default includes 'others'
    assert all_em.emotions == ("others", "negative", "positive")
    assert all_em.analysis_f1 < 1.0
    mega = evaluate_strs(pred, gt, ["negative", "positive", "surprise"])
    assert mega.pairs["analysed"].tolist() == [False, True, True]
    # negative and positive perfect, surprise degenerate -> P = R = 2/3
    assert mega.analysis_f1 == pytest.approx(2 / 3)


def test_emotion_order_is_the_summation_order():
    res = evaluate_strs(read_strs_csv(SAMPLE / "pred.csv"), read_strs_csv(SAMPLE / "gt.csv"),
                        ["surprise", "others", "happiness", "disgust", "repression"])
    expected = json.loads((SAMPLE / "expected.json").read_text())
    # Same value up to rounding, different last bit: the order is honoured, not re-sorted.
    assert res.analysis_precision == pytest.approx(expected["analysis_precision"], abs=1e-12)
    assert res.analysis_precision != expected["analysis_precision"]


def test_subjects_are_compared_as_written(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    (tmp_path / "gt.csv").write_text("subject,video,onset,offset,emotion\n1,v1,0,9,negative\n")
    (tmp_path / "pred.csv").write_text("subject,video,onset,offset,emotion\n001,v1,0,9,negative\n")
    pred, gt = read_strs_csv(tmp_path / "pred.csv"), read_strs_csv(tmp_path / "gt.csv")
    assert pred["subject"].iloc[0] == "001" and gt["subject"].iloc[0] == "1"
    with caplog.at_level(logging.WARNING, logger="vrme.metrics.strs"):
        res = evaluate_strs(pred, gt)
    assert res.spot_tp == 0 and res.pred_unscored == 1 and res.gt_unscored == 1
    assert "'001'" in caplog.text and "one style" in caplog.text
    (tmp_path / "pred.csv").write_text("subject,video,onset,offset,emotion\n1,v1,0,9,negative\n")
    assert evaluate_strs(read_strs_csv(tmp_path / "pred.csv"), gt).spot_tp == 1


def test_dataframes_with_integer_subjects_work_like_the_official_script():
    gt = table((1, "v1", 0, 9, "negative"), (2, "v1", 0, 9, "positive"))
    pred = table((1, "v1", 0, 9, "negative"), (2, "v1", 1, 9, "negative"))
    res = evaluate_strs(pred, gt)
    assert (res.spot_tp, res.spot_fp, res.spot_fn) == (2, 0, 0)
    assert res.pairs["subject"].tolist() == [1, 2]


# ---------------------------------------------------------------------------------------------
# Reference (paper) variant


def test_reference_variant_soft_matching_and_skipped_classes():
    gt = table(("1", "v1", 0, 9, "negative"), ("1", "v2", 0, 9, "positive"))
    pred = table(("1", "v1", 0, 9, "negative"), ("1", "v1", 0, 8, "positive"),
                 ("1", "v2", 0, 9, "positive"))
    ref = evaluate_strs(pred, gt, variant="reference")
    # Soft matching: both v1 predictions count, so TP 3 > 2 ground truths and FN = 2 - 3.
    assert (ref.spot_tp, ref.spot_fp, ref.spot_fn) == (3, 0, -1)
    assert ref.spot_recall == 1.5 and ref.spot_f1 == pytest.approx(1.2)
    # Recognition pairs are greedy: the second v1 prediction gets nothing.
    assert ref.pairs["pred_row"].tolist() == [0, 2]
    # negative and positive perfect; surprise never occurs and is left out (not zeroed).
    assert ref.emotions == ("negative", "positive", "surprise")
    assert ref.analysis_f1 == 1.0 and ref.analysis_uf1 == 1.0
    assert ref.strs == pytest.approx(1.2)

    off = evaluate_strs(pred, gt, ["negative", "positive", "surprise"])
    assert (off.spot_tp, off.spot_fp, off.spot_fn) == (2, 1, 0)
    assert off.analysis_f1 == pytest.approx(2 / 3)  # surprise counted as zero
    assert off.strs == pytest.approx(0.8 * 2 / 3)


def test_reference_greedy_pairs_with_best_iou_and_later_row_on_ties():
    gt = table(("1", "v1", 0, 9, "negative"), ("1", "v1", 10, 19, "positive"))
    pred = table(("1", "v1", 0, 19, "surprise"))  # IoU 0.5 with both
    ref = evaluate_strs(pred, gt, variant="reference")
    assert ref.pairs["gt_row"].tolist() == [1]
    assert ref.spot_tp == 2
    pred2 = table(("1", "v1", 0, 12, "surprise"))  # IoU 10/13 with row 0, 3/19 with row 1
    assert evaluate_strs(pred2, gt, variant="reference").pairs["gt_row"].tolist() == [0]


def test_unknown_variant_and_empty_emotions_are_rejected():
    gt = table(("1", "v1", 0, 9, "negative"))
    with pytest.raises(ValueError, match="variant"):
        evaluate_strs(gt, gt, variant="paper")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        evaluate_strs(gt, gt, [])


# ---------------------------------------------------------------------------------------------
# Vectorised engine == row-by-row port


def random_tables(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    emotions = ["negative", "positive", "surprise", "others"]
    rows_p, rows_g = [], []
    for s in range(int(rng.integers(1, 4))):
        for v in range(int(rng.integers(1, 4))):
            for _ in range(int(rng.integers(0, 7))):
                on = int(rng.integers(-5, 80))
                rows_g.append((f"s{s}", f"v{v}", on, on + int(rng.integers(0, 20)),
                               emotions[rng.integers(0, 4)]))
            for _ in range(int(rng.integers(0, 8))):
                on = int(rng.integers(-5, 80))
                rows_p.append((f"s{rng.integers(0, 4)}", f"v{v}", on, on + int(rng.integers(0, 20)),
                               emotions[rng.integers(0, 4)]))
    if not rows_g:
        rows_g.append(("s0", "v0", 0, 5, "negative"))
    return table(*rows_p), table(*rows_g)


@pytest.mark.parametrize("variant", ["official", "reference"])
def test_vectorised_equals_row_by_row_port(variant: str, caplog: pytest.LogCaptureFixture):
    rng = np.random.default_rng(7)
    caplog.set_level(logging.ERROR, logger="vrme.metrics.strs")
    for _ in range(80):
        pred, gt = random_tables(rng)
        emotions = None if rng.random() < 0.5 else ["negative", "positive", "surprise"]
        fast = evaluate_strs(pred, gt, emotions, variant=variant)
        slow = evaluate_loop(pred, gt, emotions, variant=variant)
        for key in JSON_KEYS:
            a, b = getattr(fast, key), slow[key]
            assert a == b or (math.isnan(a) and math.isnan(b)), (key, a, b)


def test_batched_candidate_search_gives_the_same_result(monkeypatch: pytest.MonkeyPatch):
    pred, gt = read_strs_csv(SAMPLE / "pred.csv"), read_strs_csv(SAMPLE / "gt.csv")
    whole = evaluate_strs(pred, gt)
    monkeypatch.setattr(strs_mod, "_CHUNK_PAIRS", 3)
    batched = evaluate_strs(pred, gt)
    assert batched.to_dict() == whole.to_dict()
    pd.testing.assert_frame_equal(batched.pairs, whole.pairs)


# ---------------------------------------------------------------------------------------------
# Bad input


HEADER = "subject,video,onset,offset,emotion\n"


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("subject,video,onset,emotion\n1,v1,0,negative\n", ["line 1", "'offset'"]),
        (HEADER + "1,v1,0,9,negative\n1,v1,3.5,9,negative\n", ["line 3", "'onset'", "3.5"]),
        (HEADER + "1,v1,0,9,negative\n1,v1,4,x,negative\n", ["line 3", "'offset'", "'x'"]),
        (HEADER + "1,v1,0,9,negative\n1,v1,8,2,negative\n", ["line 3", "'offset'", "before"]),
        (HEADER + "1,v1,0,9,negative\n,v1,0,9,negative\n", ["line 3", "'subject'", "empty"]),
        (HEADER + "1,v1,0,9,\n", ["line 2", "'emotion'", "empty"]),
        ("", ["empty"]),
        (HEADER, ["no rows"]),
        (HEADER + "1,v1,0,9,negative\n\n1,v1,0,9,negative,extra\n", ["line 4", "6 fields"]),
        (HEADER + "1,v1,0,9,negative,extra\n1,v1,0,9,negative\n", ["line 2", "6 fields"]),
        (HEADER + "1,v1,0,9,negative\n\n1,v1,3,9\n", ["line 4", "'emotion'", "empty"]),
    ],
    ids=["missing-column", "float-frame", "text-frame", "offset-before-onset", "empty-subject",
         "empty-emotion", "empty-file", "header-only", "ragged-row", "extra-field-first-row",
         "short-row"],
)
def test_bad_csv_names_file_row_and_column(tmp_path: Path, content: str, needles: list[str]):
    path = tmp_path / "my_preds.csv"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        read_strs_csv(path)
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message, message


def test_whole_number_frames_written_as_floats_are_accepted(tmp_path: Path):
    path = tmp_path / "p.csv"
    path.write_text("\ufeff" + HEADER + " 1 , v1 , 3.0 , 9 , negative \n\n1,v1,-3,+4,others\n")
    df = read_strs_csv(path)
    assert df["onset"].tolist() == [3, -3] and df["offset"].tolist() == [9, 4]
    assert df["subject"].tolist() == ["1", "1"] and df["emotion"].iloc[0] == "negative"


def test_missing_file_is_a_data_error(tmp_path: Path):
    with pytest.raises(DataError, match="not found"):
        read_strs_csv(tmp_path / "nope.csv")


def test_bad_dataframe_names_table_row_and_column():
    gt = table(("1", "v1", 0, 9, "negative"), ("1", "v1", 5, 2, "negative"))
    with pytest.raises(DataError, match=r"ground truth: row 1, column 'offset'"):
        evaluate_strs(table(("1", "v1", 0, 9, "negative")), gt)
    with pytest.raises(DataError, match=r"predictions: row 0, column 'onset'"):
        evaluate_strs(table(("1", "v1", 0.5, 9, "negative")), table(("1", "v1", 0, 9, "x")))
    with pytest.raises(DataError, match="missing column 'emotion'"):
        evaluate_strs(table(("1", "v1", 0, 9, "x")).drop(columns="emotion"),
                      table(("1", "v1", 0, 9, "x")))


def test_bad_rows_are_reported_in_file_order_and_counted(tmp_path: Path):
    path = tmp_path / "p.csv"
    path.write_text(HEADER + "1,v1,0,9,negative\n1,v1,8,2,negative\n,v1,0,9,negative\n"
                    "1,v1,x,9,negative\n1,v1,0,9,\n1,v1,5,1,positive\n")
    with pytest.raises(DataError) as info:
        read_strs_csv(path)
    msg = str(info.value)
    assert msg.index("line 3, column 'offset'") < msg.index("line 4, column 'subject'") \
        < msg.index("line 5, column 'onset'")
    assert "line 6" not in msg and "(and 2 more problems)" in msg and "\n" not in msg


@pytest.mark.parametrize("content, needle", [
    (HEADER + "1,v1,-1,9,negative\n", "line 2, column 'onset': negative frame number -1"),
    (HEADER + "1,v1,0,9,negative\n1,v1,-9,-2,negative\n",
     "line 3, column 'onset': negative frame number -9"),
])
def test_negative_frames_are_refused_unless_allowed(tmp_path: Path, content, needle, caplog):
    path = tmp_path / "g.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=needle):
        read_strs_csv(path, allow_negative=False)
    with caplog.at_level("WARNING", logger="vrme.metrics.strs"):
        df = read_strs_csv(path)  # the library default reads them, as the official evaluator
    assert (df["onset"] < 0).any() and "negative frame number" in caplog.text


def test_a_column_named_twice_in_the_header_is_refused(tmp_path: Path):
    path = tmp_path / "p.csv"
    path.write_text("subject,video,onset,offset,emotion, onset\n1,v1,0,9,negative,5\n")
    with pytest.raises(DataError, match=r"line 1 \(header\): column 'onset' appears twice "
                                        r"\(fields 3 and 6\)"):
        read_strs_csv(path)


def test_warnings_for_what_scores_but_is_probably_wrong():
    gt = table(("1", "v1", 0, 9, "negative"), ("1", "v1", 20, 29, "joy"),
               ("1", "v1", 0, 9, "negative"), ("1", "v1", 40, 49, "surprise"),
               ("1", "v1", 40, 49, "positive"))
    pred = table(("1", "v1", 0, 9, "Negative "), ("1", "v1", 20, 29, "others"))
    got = input_warnings(pred, gt, None, pred_line=lambda i: i + 2, gt_line=lambda i: i + 2)
    text = "\n".join(got)
    assert "predictions: emotion 'Negative ' at line 2: it differs from 'negative' only in case " \
           "or spaces" in text
    assert "ground truth: emotion 'joy' at line 3 (vrme's classes" in text
    assert "ground truth: 1 row(s) repeat an earlier row exactly (first: line 4 repeats line 2)" \
        in text
    assert "ground truth: the same interval is given different emotions (line 5, line 6)" in text
    assert "predictions: emotion 'others' at line 3 is not analysed" in text
    more = input_warnings(gt.iloc[:1], gt.iloc[:1], ["negative", "positive"])
    assert more == ["analysed emotion 'positive' does not occur in the ground truth: its class "
                    "is degenerate"]
    assert input_warnings(gt.iloc[:1], gt.iloc[:1], None) == []


def test_duplicated_ground_truth_still_scores_as_the_official_evaluator_but_is_warned():
    gt = table(*[("1", "v1", 10 * i, 10 * i + 5, "negative") for i in range(8)])
    pred = gt.copy()
    doubled = pd.concat([gt, gt], ignore_index=True)
    res = evaluate_strs(pred, doubled)
    assert (res.spot_tp, res.spot_fp, res.spot_fn) == (16, 0, 0)  # the official quirk
    assert any("8 row(s) repeat an earlier row exactly" in w
               for w in input_warnings(pred, doubled))


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_json_prints_the_official_numbers():
    result = CliRunner().invoke(
        app, ["strs", "--pred", str(SAMPLE / "pred.csv"), "--gt", str(SAMPLE / "gt.csv"), "--json",
              "--allow-negative"]  # the official sample predictions have negative onsets
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert list(printed) == list(JSON_KEYS)
    assert_numbers(printed, json.loads((SAMPLE / "expected.json").read_text()))


def test_cli_table_and_reference_variant():
    args = ["strs", "--pred", str(SAMPLE / "pred.csv"), "--gt", str(SAMPLE / "gt.csv"),
            "--allow-negative"]
    table_out = CliRunner().invoke(app, args)
    assert table_out.exit_code == 0, table_out.output
    assert "STRS" in table_out.stdout and "0.3862" in table_out.stdout
    assert "repression" in table_out.stdout
    ref = CliRunner().invoke(app, [*args, "--variant", "reference", "--json",
                                   "--emotions", "negative, positive,surprise"])
    assert ref.exit_code == 0, ref.output
    expected = evaluate_strs(read_strs_csv(SAMPLE / "pred.csv"), read_strs_csv(SAMPLE / "gt.csv"),
                             ["negative", "positive", "surprise"], variant="reference")
    assert json.loads(ref.stdout) == expected.to_dict()


def test_cli_refuses_the_official_sample_without_allow_negative():
    result = CliRunner().invoke(app, ["strs", "--pred", str(SAMPLE / "pred.csv"), "--gt",
                                      str(SAMPLE / "gt.csv")])
    assert result.exit_code == 2
    text = " ".join(result.stderr.split())
    assert "pred.csv: line 5, column 'onset': negative frame number -3" in text
    assert "--allow-negative" in text


def test_cli_bad_input_exits_2_with_the_message(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "1,v1,0,9,negative\n1,v1,7,3,negative\n")
    result = CliRunner().invoke(app, ["strs", "--pred", str(bad), "--gt", str(SAMPLE / "gt.csv")])
    assert result.exit_code == 2
    text = " ".join(result.stderr.split())
    assert "bad.csv" in text and "line 3" in text and "'offset'" in text


def test_cli_undefined_strs_is_json_null(tmp_path: Path):
    (tmp_path / "g.csv").write_text(HEADER + "1,v1,0,9,negative\n")
    (tmp_path / "p.csv").write_text(HEADER + "1,v1,0,9,negative\n")
    result = CliRunner().invoke(app, ["strs", "--pred", str(tmp_path / "p.csv"),
                                      "--gt", str(tmp_path / "g.csv"), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)  # the NaN warning goes to stderr, not into the JSON
    assert printed["strs"] is None and printed["spot_f1"] == 1.0
    assert "undefined" in result.stderr
