"""The seven models: shapes, what they share, and the paper's definitions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import optuna
import pytest
import torch

from mmoe.data.dataset import InputSpec
from mmoe.errors import MmoeError
from mmoe.models import MODELS, MMoE, MultiTaskModel, OMoE, build_model, hyperparameter_options, model_summary
from mmoe.models.base import TowerUnits, check_positive, check_units
from mmoe.models.experts import ExpertBank
from mmoe.models.l2_constrained import pairwise_squared_distance
from mmoe.models.layers import SparseLinear, Towers
from mmoe.models.options import CHOICE, FLOAT, INT, UNITS, Help, Units, declared_hyperparameters, options

MIXED = InputSpec(("a", "b", "c"), ("colour", "size"), (4, 6))
NUMERIC = InputSpec(tuple(f"x{i}" for i in range(10)))


def inputs(spec: InputSpec, rows: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    numeric = torch.randn(rows, spec.num_numeric, generator=generator)
    columns = [
        offset + torch.randint(0, card, (rows,), generator=generator)
        for offset, card in zip(spec.offsets, spec.cardinalities)
    ]
    categorical = torch.stack(columns, 1) if columns else torch.zeros(rows, 0, dtype=torch.long)
    return numeric, categorical


def one_hot(spec: InputSpec, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
    dense = torch.zeros(numeric.shape[0], spec.vocabulary_size)
    dense.scatter_(1, categorical, 1.0)
    return torch.cat([numeric, dense], 1)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("num_tasks", [1, 2, 4])
@pytest.mark.parametrize("spec", [MIXED, NUMERIC], ids=["mixed", "numeric"])
def test_output_shape_and_backward(name: str, num_tasks: int, spec: InputSpec) -> None:
    torch.manual_seed(0)
    model = build_model(name, spec, num_tasks)
    out = model(*inputs(spec))
    assert out.shape == (7, num_tasks)
    assert torch.isfinite(out).all()
    (out.sum() + model.penalty()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad and p.numel())


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_has_a_one_line_summary_and_rebuilds_from_its_hyperparameters(name: str) -> None:
    assert model_summary(name) and "\n" not in model_summary(name)
    model = build_model(name, MIXED, 3)
    rebuilt = type(model)(MIXED, 3, **model.hyperparameters)
    rebuilt.load_state_dict(model.state_dict())
    numeric, categorical = inputs(MIXED)
    torch.testing.assert_close(rebuilt(numeric, categorical), model(numeric, categorical))


def test_sparse_linear_is_a_linear_map_on_the_one_hot_input() -> None:
    layer = SparseLinear(MIXED, 5)
    numeric, categorical = inputs(MIXED)
    weight = torch.cat([layer.numeric_weight, layer.category_weight], 0)
    expected = one_hot(MIXED, numeric, categorical) @ weight + layer.bias
    torch.testing.assert_close(layer(numeric, categorical), expected)


@pytest.mark.parametrize("dense_cardinality", [0, 4, 16], ids=["all-scatter", "mixed", "all-dense"])
def test_sparse_linear_column_backward_equals_embedding_bags(dense_cardinality: int) -> None:
    spec = InputSpec(numeric=("a", "b"), categorical=("c", "d", "e"), cardinalities=(4, 7, 3))
    torch.manual_seed(0)
    layer = SparseLinear(spec, 12)
    layer.dense_gradient_cardinality = dense_cardinality
    numeric, categorical = inputs(spec, rows=64)
    grads = []
    for custom_backward in (True, False):
        layer.custom_backward = custom_backward
        layer.zero_grad()
        output = layer(numeric, categorical)
        (output * torch.linspace(-1, 1, 12)).square().sum().backward()
        grads.append((output.detach(), layer.category_weight.grad.clone(), layer.numeric_weight.grad.clone()))
    for fast, reference in zip(*grads):
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-6)
    assert grads[0][1].abs().sum() > 0


def test_expert_bank_matches_experts_computed_one_by_one() -> None:
    torch.manual_seed(1)
    bank = ExpertBank(MIXED, num_experts=3, expert_units=(5, 4), num_gates=2)
    numeric, categorical = inputs(MIXED)
    experts, gate_logits = bank(numeric, categorical)
    assert experts.shape == (7, 3, 4) and gate_logits.shape == (7, 2, 3)
    first = bank.input_layer(numeric, categorical)
    for e in range(3):
        hidden = torch.relu(first[:, e * 5 : (e + 1) * 5] + bank.expert_bias[e])
        layer = bank.deeper.hidden[0]
        alone = torch.relu(hidden @ layer.weight[e] + layer.bias[e])
        torch.testing.assert_close(experts[:, e], alone)


@pytest.mark.parametrize("model_class", [MMoE, OMoE])
def test_gates_are_distributions_over_experts(model_class: type) -> None:
    model = model_class(MIXED, 3, num_experts=5)
    gates = model.gates(*inputs(MIXED, rows=11))
    assert gates.shape == (11, 3, 5)
    assert (gates >= 0).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(11, 3))


def test_mmoe_has_a_gate_per_task_and_omoe_shares_one() -> None:
    torch.manual_seed(0)
    mmoe_gates = MMoE(MIXED, 3).gates(*inputs(MIXED))
    omoe_gates = OMoE(MIXED, 3).gates(*inputs(MIXED))
    assert not torch.allclose(mmoe_gates[:, 0], mmoe_gates[:, 1])
    torch.testing.assert_close(omoe_gates[:, 0], omoe_gates[:, 1])
    torch.testing.assert_close(omoe_gates[:, 0], omoe_gates[:, 2])


def test_omoe_is_mmoe_with_one_shared_gate() -> None:
    torch.manual_seed(0)
    experts, units, tasks = 4, 6, 3
    mmoe, omoe = MMoE(MIXED, tasks, experts, (units,)), OMoE(MIXED, tasks, experts, (units,))
    with torch.no_grad():
        split = experts * units
        for name in ("numeric_weight", "category_weight"):
            source = getattr(mmoe.experts.input_layer, name)
            gate = source[:, split : split + experts]
            for k in range(1, tasks):  # make every MMoE gate equal to the first
                source[:, split + k * experts : split + (k + 1) * experts] = gate
            getattr(omoe.experts.input_layer, name).copy_(source[:, : split + experts])
        omoe.experts.expert_bias.copy_(mmoe.experts.expert_bias)
        for target, source in zip(omoe.towers.parameters(), mmoe.towers.parameters()):
            target.copy_(source)
    numeric, categorical = inputs(MIXED)
    torch.testing.assert_close(omoe(numeric, categorical), mmoe(numeric, categorical))


def _gradient_footprints(model: torch.nn.Module, numeric: torch.Tensor, categorical: torch.Tensor) -> list:
    footprints = []
    for k in range(model.num_tasks):
        model.zero_grad()
        model(numeric, categorical)[:, k].sum().backward()
        footprints.append(
            [(p.grad != 0) if p.grad is not None else torch.zeros_like(p, dtype=torch.bool) for p in model.parameters()]
        )
    return footprints


def _shared_entries(model: torch.nn.Module, spec: InputSpec) -> int:
    first, second = _gradient_footprints(model, *inputs(spec, rows=32))
    return sum(int((a & b).sum()) for a, b in zip(first, second))


@pytest.mark.parametrize("name", ["single-task", "l2-constrained"])
def test_per_task_networks_share_no_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, MIXED, 2, hidden_units=(6, 5))
    assert _shared_entries(model, MIXED) == 0


def test_cross_stitch_with_identity_stitches_shares_nothing_but_mixes_by_default() -> None:
    torch.manual_seed(0)
    assert _shared_entries(build_model("cross-stitch", MIXED, 2, self_weight=1.0), MIXED) == 0
    assert _shared_entries(build_model("cross-stitch", MIXED, 2, hidden_units=(6, 5)), MIXED) > 0


@pytest.mark.parametrize("name", ["shared-bottom", "omoe", "mmoe", "tensor-factorization"])
def test_shared_models_share_parameters(name: str) -> None:
    torch.manual_seed(0)
    assert _shared_entries(build_model(name, MIXED, 2), MIXED) > 0


def test_cross_stitch_per_unit_matrices() -> None:
    model = build_model("cross-stitch", MIXED, 3, hidden_units=(6, 5), stitch="unit")
    assert [tuple(s.shape) for s in model.stitches] == [(6, 3, 3), (5, 3, 3)]
    torch.testing.assert_close(model.stitches[0].sum(-1), torch.ones(6, 3))


def test_l2_penalty_is_alpha_times_the_squared_distance_of_the_bottoms() -> None:
    torch.manual_seed(0)
    model = build_model("l2-constrained", MIXED, 2, hidden_units=(4, 3), l2_alpha=0.5)
    layer = model.input_layer
    width = 4
    expected = 0.0
    for weight in (layer.numeric_weight, layer.category_weight):
        expected += (weight[:, :width] - weight[:, width:]).pow(2).sum()
    expected += (layer.bias[:width] - layer.bias[width:]).pow(2).sum()
    for deeper in model.bottom.hidden:
        expected += (deeper.weight[0] - deeper.weight[1]).pow(2).sum() + (deeper.bias[0] - deeper.bias[1]).pow(2).sum()
    torch.testing.assert_close(model.penalty(), 0.5 * expected)
    # Identical task networks cost nothing.
    with torch.no_grad():
        for weight in (layer.numeric_weight, layer.category_weight):
            weight[:, width:] = weight[:, :width]
        layer.bias[width:] = layer.bias[:width]
        for deeper in model.bottom.hidden:
            deeper.weight[1] = deeper.weight[0]
            deeper.bias[1] = deeper.bias[0]
    assert float(model.penalty().detach()) == pytest.approx(0.0, abs=1e-6)


def test_pairwise_squared_distance_counts_every_pair() -> None:
    per_task = torch.randn(4, 3, 2)
    expected = sum((per_task[i] - per_task[j]).pow(2).sum() for i in range(4) for j in range(i + 1, 4))
    torch.testing.assert_close(pairwise_squared_distance(per_task), expected)


def test_tensor_factorization_equals_the_explicit_tucker_weights() -> None:
    torch.manual_seed(0)
    model = build_model("tensor-factorization", NUMERIC, 3, hidden_units=(5,), ranks=(4, 3, 2))
    numeric, categorical = inputs(NUMERIC)
    u1 = model.input_factor.numeric_weight  # d × r1
    # W[d, h, k] = Σ_abc S[a,b,c] U1[d,a] U2[h,b] U3[k,c]
    weights = torch.einsum("abc,da,hb,kc->dhk", model.core, u1, model.hidden_factor, model.task_factor)
    for k in range(3):
        hidden = torch.relu(numeric @ weights[:, :, k] + model.bias[k])
        expected = model.towers.hidden[0]
        tower = torch.relu(hidden @ expected.weight[k] + expected.bias[k])
        output = tower @ model.towers.output.weight[k] + model.towers.output.bias[k]
        torch.testing.assert_close(model(numeric, categorical)[:, k], output.squeeze(-1))


def test_default_moe_sizes_are_the_papers() -> None:
    model = build_model("mmoe", NUMERIC, 2)
    assert model.hyperparameters == {"num_experts": 8, "expert_units": (16,), "tower_units": (8,)}


@pytest.mark.parametrize(
    "name, options, fragment",
    [
        ("transformer", {}, "unknown model 'transformer'"),
        ("shared-bottom", {"num_experts": 4}, "does not take num_experts"),
        ("mmoe", {"num_experts": 0}, "num_experts must be a positive integer"),
        ("mmoe", {"expert_units": (16, -1)}, "expert_units must be positive integers"),
        ("l2-constrained", {"l2_alpha": -1.0}, "l2_alpha must be a positive number"),
        ("tensor-factorization", {"ranks": (4, 4)}, "ranks must be three integers"),
        ("cross-stitch", {"stitch": "diagonal"}, "stitch must be one of"),
    ],
)
def test_bad_model_options_are_one_line_errors(name: str, options: dict, fragment: str) -> None:
    with pytest.raises(MmoeError, match=fragment) as error:
        build_model(name, MIXED, 2, **options)
    assert "\n" not in str(error.value)


# -- each model declared once --------------------------------------------------------------------------
def test_the_models_are_listed_in_the_papers_order() -> None:
    assert list(MODELS)[:7] == [
        "single-task",
        "shared-bottom",
        "l2-constrained",
        "cross-stitch",
        "tensor-factorization",
        "omoe",
        "mmoe",
    ]


@pytest.mark.parametrize("name", list(MODELS))
def test_every_hyperparameter_is_declared_with_a_type_a_default_and_a_help(name: str) -> None:
    declared = declared_hyperparameters(MODELS[name])
    assert declared and all(h.help and "\n" not in h.help for h in declared.values())
    model = build_model(name, MIXED, 2)
    assert list(model.hyperparameters) == list(declared)  # what the constructor keeps is what it declares
    for hyperparameter in declared.values():  # the declared type is the type of the value the model keeps
        kept = model.hyperparameters[hyperparameter.name]
        assert kept == hyperparameter.default
        kind = {INT: int, FLOAT: float, UNITS: tuple, CHOICE: str}[hyperparameter.kind]
        assert isinstance(kept, kind) and (hyperparameter.kind != CHOICE or kept in hyperparameter.choices)


def test_a_flag_shared_by_several_models_has_one_type_and_names_each_models_default() -> None:
    shared = hyperparameter_options()
    assert shared["tower_units"].models == tuple(MODELS)
    assert shared["hidden_units"].kind == UNITS and "default 128: shared-bottom" in shared["hidden_units"].help()
    assert (
        "default 64: single-task, l2-constrained, cross-stitch, tensor-factorization" in shared["hidden_units"].help()
    )

    class Wide:
        name = "wide"

        def __init__(
            self, input_spec: InputSpec, num_tasks: int, tower_units: Annotated[Units, Help("towers")] = (8,)
        ) -> None: ...

    class Narrow:
        name = "narrow"

        def __init__(
            self, input_spec: InputSpec, num_tasks: int, tower_units: Annotated[int, Help("one tower layer")] = 8
        ) -> None: ...

    with pytest.raises(TypeError, match="'tower_units' is units in model wide but int in model narrow"):
        options([Wide, Narrow])


def test_a_hyperparameter_without_help_or_default_is_a_bug_in_the_model() -> None:
    class NoHelp:
        def __init__(self, input_spec: InputSpec, num_tasks: int, width: int = 3) -> None: ...

    class NoDefault:
        def __init__(self, input_spec: InputSpec, num_tasks: int, width: Annotated[int, Help("w")]) -> None: ...

    class OddType:
        def __init__(
            self,
            input_spec: InputSpec,
            num_tasks: int,
            width: Annotated[list[str], Help("w")] = ["a"],  # noqa: B006
        ) -> None: ...

    for model_class, fragment in ((NoHelp, "Annotated"), (NoDefault, "needs a default"), (OddType, "not one of")):
        with pytest.raises(TypeError, match=fragment):
            declared_hyperparameters(model_class)


@pytest.fixture()
def ladder() -> Iterator[type[MultiTaskModel]]:
    """A model defined here and nowhere else: defining the class registers it."""

    class Ladder(MultiTaskModel):
        """Ladder: a throwaway model of this test, rungs of equal width."""

        name = "ladder"

        def __init__(
            self,
            input_spec: InputSpec,
            num_tasks: int,
            rungs: Annotated[int, Help("number of rungs")] = 2,
            rung_units: Annotated[Units, Help("units per rung")] = (4,),
            slope: Annotated[Literal["flat", "steep"], Help("how the rungs climb")] = "flat",
            tower_units: TowerUnits = (8,),
        ) -> None:
            rungs = check_positive(self.name, "rungs", rungs)
            rung_units = check_units(self.name, "rung_units", rung_units)
            super().__init__(
                input_spec, num_tasks, rungs=rungs, rung_units=rung_units, slope=slope, tower_units=tower_units
            )
            self.input_layer = SparseLinear(input_spec, rungs * rung_units[0])
            self.towers = Towers(num_tasks, rungs * rung_units[0], tower_units)

        @classmethod
        def search_space(cls, trial: optuna.Trial, max_units: int) -> dict[str, Any]:
            return {"rungs": trial.suggest_int("rungs", 1, 4), "rung_units": (trial.suggest_int("rung_units", 2, 8),)}

        def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
            hidden = torch.relu(self.input_layer(numeric, categorical))
            return self.towers(hidden.unsqueeze(1).expand(-1, self.num_tasks, -1))

    yield Ladder
    del MODELS["ladder"]


def test_a_new_model_is_one_class_and_gets_its_flags_config_keys_listing_and_search_space(
    ladder: type[MultiTaskModel], tmp_path: Path, capsys: pytest.CaptureFixture, one_torch_thread: None
) -> None:
    from mmoe.cli import build_parser, main
    from mmoe.config_file import read_train_config
    from mmoe.tune import suggest

    assert MODELS["ladder"] is ladder
    # `mmoe models -v`: its docstring's first line and its defaults.
    assert main(["models", "-v"]) == 0
    listing = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(listing) if line.startswith("ladder "))
    assert "Ladder: a throwaway model of this test" in listing[at]
    assert listing[at + 1].split() == ["defaults:", "rungs=2,", "rung_units=(4,),", "slope=flat,", "tower_units=(8,)"]

    # `mmoe train`'s flags, with the declared types, choices and help.
    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    help_text = " ".join(train.format_help().split())
    assert "--rungs RUNGS number of rungs (default 2: ladder)" in help_text
    assert "--slope {flat,steep} how the rungs climb (default flat: ladder)" in help_text
    args = build_parser().parse_args(["train", "--model", "ladder", "--rungs", "3", "--rung-units", "5,5"])
    from mmoe.cli import model_hyperparameters

    assert model_hyperparameters(args) == {"rungs": 3, "rung_units": (5, 5)}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--model", "ladder", "--slope", "sideways"])
    capsys.readouterr()

    # The config file's keys, checked by their declared kinds.
    path = tmp_path / "ladder.json"
    path.write_text(
        json.dumps({"model": "ladder", "hyperparameters": {"rungs": 3, "rung_units": [5], "slope": "steep"}})
    )
    assert read_train_config(path)["hyperparameters"] == {"rungs": 3, "rung_units": (5,), "slope": "steep"}
    path.write_text(json.dumps({"model": "ladder", "hyperparameters": {"slope": "sideways"}}))
    with pytest.raises(MmoeError, match="hyperparameter 'slope' is 'sideways'; expected one of: flat, steep"):
        read_train_config(path)
    path.write_text(json.dumps({"model": "ladder", "hyperparameters": {"rungs": 2.5}}))
    with pytest.raises(MmoeError, match="hyperparameter 'rungs' is 2.5; expected an integer"):
        read_train_config(path)

    # Its search space, through the tuning code.
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    drawn = suggest(trial, "ladder", 16)
    assert set(drawn) == {"rungs", "rung_units"} and set(trial.params) == {"rungs", "rung_units"}

    # And it trains from the command line.
    code = main(
        [
            "train",
            "--dataset",
            "synthetic",
            "--rows",
            "300",
            "--model",
            "ladder",
            "--rungs",
            "3",
            "--slope",
            "steep",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"] == "ladder" and config["hyperparameters"] == {
        "rungs": 3,
        "rung_units": [4],
        "slope": "steep",
        "tower_units": [8],
    }


def test_a_config_file_key_no_model_takes_names_the_models_own(tmp_path: Path) -> None:
    from mmoe.config_file import read_train_config

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model": "mmoe", "hyperparameters": {"num_expert": 4}}))
    with pytest.raises(
        MmoeError,
        match="'num_expert' = 4 is not one of model mmoe's; expected only num_experts, expert_units, tower_units",
    ):
        read_train_config(path)
