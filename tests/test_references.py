"""Algorithm 1 (reference selection) against a per-age Python loop, and the reference bank."""

import warnings

import pytest
import torch

from agekit.data.labels import AgeLabels
from agekit.references import ReferenceBank, select_references


def slow_select(features, pred_ages, true_ages, label_values):
    """Algorithm 1 read literally: for each label, scan the samples; then fill missing labels."""
    best = {}
    for label in label_values:
        for i in range(len(true_ages)):
            if float(true_ages[i]) != label:
                continue
            error = abs(float(true_ages[i]) - float(pred_ages[i]))
            if label not in best or error < best[label][0]:  # strict: the first index wins a tie
                best[label] = (error, i)
    present = sorted(best)
    source = {}
    for label in label_values:
        if label in best:
            source[label] = best[label][1]
        else:  # nearest present age, the younger on equal distance
            nearest = min(present, key=lambda p: (abs(p - label), p))
            source[label] = best[nearest][1]
    index = [source[label] for label in label_values]
    return features[index], index


def _data(seed, count=400, channels=5):
    """Ages 8-45 with 15, 16 and 30 absent; integer predictions so that errors tie often."""
    generator = torch.Generator().manual_seed(seed)
    pool = torch.tensor([a for a in range(8, 46) if a not in (15, 16, 30)])
    true = pool[torch.randint(len(pool), (count,), generator=generator)]
    pred = (true + torch.randint(-3, 4, (count,), generator=generator)).float()
    features = torch.randn(count, channels, generator=generator)
    return features, pred, true


LABELS = list(range(10, 43))  # 15, 16, 30 have no sample; 8, 9, 43-45 are no label


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_per_age_loop_with_ties_and_missing_ages(seed):
    features, pred, true = _data(seed)
    want, want_index = slow_select(features, pred, true, LABELS)
    with pytest.warns(UserWarning, match="3 age label"):
        got, info = select_references(features, pred, true, AgeLabels(torch.tensor(LABELS)), return_info=True)
    assert got.shape == (len(LABELS), 5)
    assert torch.equal(got, want)
    assert info.source_index.tolist() == want_index
    assert info.missing_ages == [15, 16, 30]
    # 15 and 16 lie one year from 14 and 17 respectively; 30 is as far from 29 as from 31: the younger.
    assert info.filled_from == {15: 14, 16: 17, 30: 29}
    chosen_errors = (true[info.source_index] - pred[info.source_index]).abs()
    assert torch.allclose(info.reference_errors, chosen_errors)


def test_hand_example_with_a_tie():
    features = torch.arange(6, dtype=torch.float32).reshape(6, 1)
    true = torch.tensor([20, 21, 20, 20, 21, 99])
    pred = torch.tensor([21.0, 21.5, 19.0, 20.5, 20.5, 99.0])
    # age 20: errors 1, 1, 0.5 at samples 0, 2, 3 -> sample 3;
    # age 21: errors 0.5, 0.5 at samples 1, 4 -> tie, the smaller index 1; age 99 is no label.
    refs, info = select_references(features, pred, true, torch.tensor([20, 21]), return_info=True)
    assert refs.flatten().tolist() == [3.0, 1.0]
    assert info.missing_ages == [] and info.filled_from == {}


def test_labels_as_tensor_or_list_and_float_ages_agree():
    features, pred, true = _data(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = select_references(features, pred, true, AgeLabels(torch.tensor(LABELS)))
        b = select_references(features, pred, true.float(), torch.tensor(LABELS))
        c = select_references(features.double(), pred, true, LABELS)
    assert torch.equal(a, b) and torch.equal(a.double(), c) and c.dtype == torch.float64


def test_warning_names_the_missing_ages():
    features = torch.randn(3, 2)
    with pytest.warns(UserWarning) as record:
        select_references(features, torch.tensor([1.0, 5.0, 9.0]), torch.tensor([1, 5, 9]), [1, 3, 5, 9, 12])
    message = str(record[0].message)
    assert "3 <- 1" in message and "12 <- 9" in message


def test_bad_inputs_raise_clear_errors():
    features, pred, true = torch.randn(4, 3), torch.tensor([1.0, 2, 3, 4]), torch.tensor([1, 2, 3, 4])
    with pytest.raises(ValueError, match="Lengths do not match"):
        select_references(features, pred[:3], true, [1, 2, 3, 4])
    with pytest.raises(ValueError, match="NaN"):
        select_references(features, torch.tensor([1.0, float("nan"), 3, 4]), true, [1, 2, 3, 4])
    with pytest.raises(ValueError, match="NaN"):
        select_references(torch.full((4, 3), float("nan")), pred, true, [1, 2, 3, 4])
    with pytest.raises(ValueError, match="empty"):
        select_references(torch.zeros(0, 3), torch.zeros(0), torch.zeros(0), [1, 2])
    with pytest.raises(ValueError, match="No sample"):
        select_references(features, pred, true, [50, 60])
    with pytest.raises(ValueError, match="increasing"):
        select_references(features, pred, true, torch.tensor([3, 1, 2]))
    with pytest.raises(TypeError, match="AgeLabels"):
        select_references(features, pred, true, "1-4")
    with pytest.raises(ValueError, match="2-D"):
        select_references(torch.randn(4), pred, true, [1, 2, 3, 4])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_device_of_the_inputs():
    features, pred, true = _data(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = select_references(features, pred, true, LABELS)
        gpu = select_references(features.cuda(), pred.cuda(), true.cuda(), LABELS)
    assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)


# ---------------------------------------------------------------- the reference bank

LABELS_SMALL = AgeLabels(torch.arange(20, 30))


def _epoch(seed, count=60):
    generator = torch.Generator().manual_seed(seed)
    true = torch.arange(count) % 10 + 20
    pred = true + torch.randn(count, generator=generator)
    return torch.randn(count, 4, generator=generator), pred, true


def _run_epoch(bank, seed, val_mae=None, batch=16, **kwargs):
    features, pred, true = _epoch(seed)
    for start in range(0, len(true), batch):
        bank.add(features[start : start + batch], pred[start : start + batch], true[start : start + batch])
    bank.end_epoch(val_mae=val_mae, **kwargs)
    return select_references(features, pred, true, LABELS_SMALL)


def test_bank_is_empty_in_epoch_one_then_selects_from_the_epoch():
    bank = ReferenceBank(LABELS_SMALL)
    assert bank.references is None
    features, pred, true = _epoch(0)
    bank.add(features[:30].requires_grad_(), pred[:30], true[:30])
    assert bank.references is None and len(bank) == 30
    bank.add(features[30:], pred[30:], true[30:])
    refs = bank.end_epoch()
    assert torch.equal(refs, select_references(features, pred, true, LABELS_SMALL))
    assert not refs.requires_grad and len(bank) == 0 and bank.epochs_seen == 1


def test_latest_and_best_val_modes():
    latest, best = ReferenceBank(LABELS_SMALL), ReferenceBank(LABELS_SMALL, mode="best_val")
    expected = []
    for seed, val_mae in [(0, 5.0), (1, 4.0), (2, 6.0)]:
        expected.append(_run_epoch(latest, seed, val_mae))
        _run_epoch(best, seed, val_mae)
    assert torch.equal(latest.references, expected[2])  # the epoch just finished
    assert torch.equal(best.references, expected[1])  # the best validation epoch
    assert best.best_val_mae == 4.0 and best.reference_epoch == 2 and latest.reference_epoch == 3
    _run_epoch(best, 3, val_mae=3.5)
    assert torch.equal(best.references, _epoch_refs(3)) and best.reference_epoch == 4


def _epoch_refs(seed):
    return select_references(*_epoch(seed), LABELS_SMALL)


def test_bank_errors():
    bank = ReferenceBank(LABELS_SMALL, mode="best_val")
    with pytest.raises(ValueError, match="Nothing was collected"):
        bank.end_epoch(val_mae=1.0)
    bank.add(*_epoch(0))
    with pytest.raises(ValueError, match="val_mae"):
        bank.end_epoch()
    with pytest.raises(ValueError, match="mode must be one of"):
        ReferenceBank(LABELS_SMALL, mode="best")
    with pytest.raises(ValueError, match="channels"):
        bank.add(torch.randn(2, 7), torch.ones(2), torch.ones(2))


def test_state_dict_round_trip_with_weights_only(tmp_path):
    bank = ReferenceBank(LABELS_SMALL, mode="best_val")
    _run_epoch(bank, 0, val_mae=5.0)
    path = tmp_path / "bank.pt"
    torch.save(bank.state_dict(), path)
    restored = ReferenceBank(LABELS_SMALL, mode="best_val")
    restored.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(restored.references, bank.references)
    assert torch.equal(restored.info.source_index, bank.info.source_index)
    assert restored.best_val_mae == 5.0 and restored.epochs_seen == 1 and restored.reference_epoch == 1
    # A worse epoch after restoring keeps the restored references.
    _run_epoch(restored, 1, val_mae=6.0)
    assert torch.equal(restored.references, bank.references)
    with pytest.raises(ValueError, match="mode"):
        ReferenceBank(LABELS_SMALL).load_state_dict(bank.state_dict())
    with pytest.raises(ValueError, match="age labels"):
        ReferenceBank(torch.arange(20, 31), mode="best_val").load_state_dict(bank.state_dict())
    empty = ReferenceBank(LABELS_SMALL)
    empty.load_state_dict(ReferenceBank(LABELS_SMALL).state_dict())
    assert empty.references is None and empty.info is None


def test_state_dict_keeps_missing_age_information(tmp_path):
    bank = ReferenceBank(torch.arange(19, 30))  # no sample is 19 years old
    with pytest.warns(UserWarning, match="19 <- 20"):
        _run_epoch(bank, 0)
    torch.save(bank.state_dict(), tmp_path / "bank.pt")
    restored = ReferenceBank(torch.arange(19, 30))
    restored.load_state_dict(torch.load(tmp_path / "bank.pt", weights_only=True))
    assert restored.info.missing_ages == [19] and restored.info.filled_from == {19: 20}


def test_gather_hook_selects_from_all_ranks():
    other_rank = _epoch(7)
    calls = []

    def gather(tensor):  # stands in for an all-gather: this rank's samples, then rank 1's
        calls.append(tensor.shape)
        return torch.cat([tensor, other_rank[len(calls) - 1].to(tensor.dtype)])

    bank = ReferenceBank(LABELS_SMALL)
    mine = _epoch(6)
    bank.add(*mine)
    bank.end_epoch(gather=gather)
    assert len(calls) == 3  # features, predicted ages, true ages
    union = [torch.cat([a, b.to(a.dtype)]) for a, b in zip(mine, other_rank)]
    assert torch.equal(bank.references, select_references(*union, LABELS_SMALL))


def test_bank_can_store_on_cpu():
    bank = ReferenceBank(LABELS_SMALL, store="cpu")
    bank.add(*_epoch(0))
    assert bank.end_epoch().device.type == "cpu"


def _authors_port():
    """The RAPL authors' select_refs as ported into benchmarks/bench_references.py."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_references.py"
    spec = importlib.util.spec_from_file_location("bench_references", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_the_rapl_authors_selection(seed):
    """Continuous predictions (no tied errors): the authors' per-age pandas loop and ours pick the same rows."""
    port = _authors_port()
    features, pred, true, values = port.make_pass(3_000, labels=40, seed=seed)
    want = port.authors_select_refs(features, port.authors_table(pred, true))
    assert want.shape == (40, 256)
    assert torch.equal(select_references(features, pred, true, values), want)


def test_a_tie_picks_one_of_the_rows_the_authors_would_pick():
    """With whole-year predictions the authors choose at random among tied rows; ours is one of them."""
    import random

    port = _authors_port()
    features, pred, true = _data(3)
    features = torch.randn(len(true), 256, generator=torch.Generator().manual_seed(3))
    present = sorted(set(true.tolist()))
    _, info = select_references(features, pred, true, present, return_info=True)
    table = port.authors_table(pred, true)
    picks = [set() for _ in present]
    random.seed(0)
    for _ in range(20):
        refs = port.authors_select_refs(features, table)
        for row, ref in enumerate(refs):
            picks[row].add(int((features == ref).all(dim=1).nonzero()[0]))
    assert any(len(rows) > 1 for rows in picks)  # the data do tie
    errors = (true - pred).abs()
    for row, label in enumerate(present):
        mine = int(info.source_index[row])
        tied = ((true == label) & (errors == errors[true == label].min())).nonzero().squeeze(1).tolist()
        assert mine == min(tied) and picks[row] <= set(tied)


def _slots_by_loop(true_ages, values):
    values = values.tolist()
    return [values.index(float(a)) if float(a) in values else len(values) for a in true_ages.tolist()]


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.float32, torch.float64])
def test_label_lookup_matches_a_search_for_every_age_kind(dtype):
    """Each sample's label slot (the table lookup) against list.index: gaps, out of range, fractions."""
    from agekit.references import _label_slots

    values = torch.tensor([3, 4, 7, 8, 9, 20, 61])
    ages = torch.tensor([0, 2, 3, 4, 5, 7, 9, 20, 21, 61, 62, 200, 7, 3])
    if dtype.is_floating_point:
        ages = torch.cat([ages.to(dtype), torch.tensor([3.5, -0.5, -3.0, 60.999, 8.25], dtype=dtype)])
    else:
        ages = ages.to(dtype)
    assert _label_slots(ages, values).tolist() == _slots_by_loop(ages, values)


def test_label_lookup_on_a_wide_label_range_falls_back_to_search(monkeypatch):
    import agekit.references as references

    values = torch.tensor([1, 5, 900, 2000])
    ages = torch.tensor([1.0, 2.0, 900.0, 900.5, 2000.0, 5000.0, -7.0, 1e30, -1e30])
    want = _slots_by_loop(ages, values)
    assert references._label_slots(ages, values).tolist() == want
    monkeypatch.setattr(references, "LOOKUP_SPAN", 100)
    assert references._label_slots(ages, values).tolist() == want
    whole = ages[:-2].long()
    assert references._label_slots(whole, values).tolist() == _slots_by_loop(whole, values)
