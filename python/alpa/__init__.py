"""alpa: plan, simulate and train models across devices, from Python.

    import alpa
    model = alpa.load_model("gpt", size="tiny")            # or a text IR file
    plan = alpa.plan(model, cluster="p3.16xlarge", mesh="2x4")
    print(plan, plan.stages[0]["layouts"])
    report = alpa.simulate(plan)
    trainer = alpa.Trainer(model, mesh="2x2")             # 4 virtual devices (threads)
    losses = trainer.train(20, callback=lambda p: print(p.step, p.loss))
    weights = trainer.weights()                           # {name: numpy.ndarray}

Every user error raises alpa.Error, whose .message says what is wrong and .hint how to fix it.
The same planner, simulator and runtime run behind the `alpa` command; its flags map to the
keyword arguments here (--mesh 2x2 -> mesh="2x2", --devices 8 -> devices=8).
"""

import os as _os
import time as _time
from typing import Callable, Dict, List, NamedTuple, Optional, Union

from . import _core
from ._core import Error, Model, Plan, SimReport

__all__ = ["Error", "Model", "Plan", "SimReport", "Trainer", "Progress", "load_model", "plan",
           "simulate"]
__version__ = "0.1.0"

_SCHEDULES = ("1f1b", "gpipe")
_CHOICES = ("simulation", "planner")
_OPTIMIZERS = ("adamw", "adam", "sgd")


def load_model(name_or_path: Union[str, "_os.PathLike[str]"], size: str = "tiny", *,
               batch: Optional[int] = None, seq: Optional[int] = None,
               layers: Optional[int] = None, hidden: Optional[int] = None,
               heads: Optional[int] = None, vocab: Optional[int] = None,
               dtype: Optional[str] = None, loss: Optional[str] = None) -> Model:
    """Loads a model as `alpa ... --model NAME --size SIZE` does.

    name_or_path: a built-in family ("gpt", "mlp", "convnet", "moe", "wresnet") or the path
        of a model file: text IR, or ONNX (torch.onnx.export; its initializers are the
        weights' initial values, a symbolic batch dimension takes `batch`).
    size: the family's named size ("tiny", "125m", "1.3b", ...); ignored for files.
    batch, seq, layers, hidden, heads, vocab: override the size's dimensions.
    dtype: "f32", or "bf16"/"f16" for mixed precision (f32 master weights).
    loss: ONNX models that return outputs, not a loss: "cross_entropy" or "mse", optionally
        ":OUTPUT" (a "labels" input is added); without it the graph's output "loss" is used.
    """
    if isinstance(name_or_path, _os.PathLike):
        name_or_path = _os.fspath(name_or_path)
    if not isinstance(name_or_path, str):
        raise Error(f"load_model: expected a model name or a path, got {type(name_or_path).__name__}",
                    'pass e.g. "gpt" or "model.ir"', "invalid_argument")
    for key, value in (("batch", batch), ("seq", seq), ("layers", layers), ("hidden", hidden),
                       ("heads", heads), ("vocab", vocab)):
        _check_int(f"load_model: {key}", value, allow_none=True)
    return _core.load_model(name_or_path, size, batch=batch, seq=seq, layers=layers,
                            hidden=hidden, heads=heads, vocab=vocab, dtype=dtype or "",
                            loss=loss or "")


def plan(model: Model, *, cluster: str = "p3.16xlarge",
         mesh: Union[str, tuple, None] = None, devices: Optional[int] = None,
         manual: str = "auto", micro_batches: int = 0, schedule: Optional[str] = None,
         choose: Optional[str] = None, memory_budget_gb: float = 0.0,
         optimizer: str = "adamw", lr: float = 1e-3) -> Plan:
    """Plans the model's training step as `alpa plan` does; returns an alpa.Plan.

    cluster: a preset ("p3.16xlarge", "p4d.24xlarge", "dgx-h100", "local") or a cluster JSON.
    mesh: one device mesh, "2x4" or (2, 4), planned by the intra-operator ILP; or
    devices: a pipeline over N devices (stages, submeshes and micro-batches searched).
        Neither: mesh "1x8".
    manual: "auto" (the ILP), a manual plan ("data-parallel", "zero", "zero3",
        "tensor-parallel", "2d") or a plan file (Plan.save / `alpa plan --out`).
    micro_batches: 0 lets a pipeline's planner search them.
    schedule: "1f1b" (default) or "gpipe"; choose: "simulation" (default) or "planner".
    """
    args = _parallel_args(model, cluster, mesh, devices, manual, micro_batches, schedule,
                          choose, memory_budget_gb, optimizer, lr)
    return _core._plan(model, args)


def simulate(model_or_plan: Union[Model, Plan], *, cluster: Optional[str] = None,
             **plan_args) -> SimReport:
    """Simulates one training step on a cluster's cost model, as `alpa simulate` does.

    Given a Plan, its program is simulated (on `cluster` if given, else the plan's). Given a
    Model, it is planned first with plan_args (mesh=, devices=, ...; see alpa.plan).
    """
    if isinstance(model_or_plan, Plan):
        if plan_args:
            raise Error(f"simulate: {', '.join(sorted(plan_args))} apply to a model, not a plan",
                        "pass the model to plan it anew, or drop them", "invalid_argument")
        return model_or_plan._simulate(cluster or "")
    if isinstance(model_or_plan, Model):
        if cluster is not None:
            plan_args["cluster"] = cluster
        return plan(model_or_plan, **plan_args)._simulate("")
    raise Error(f"simulate: expected an alpa.Model or alpa.Plan, got {type(model_or_plan).__name__}",
                "alpa.load_model() makes a model, alpa.plan() a plan", "invalid_argument")


class Progress(NamedTuple):
    """What Trainer.train passes its callback after each step."""
    step: int          # 1-based, counting every step this trainer ran
    steps: int         # the last step of this train() call
    loss: float
    seconds: float     # wall time of the step (data excluded)


class Trainer:
    """Trains a model on virtual devices of this process (one thread per device).

    mesh="2x2" shards every step over a 2x2 mesh (the ILP's plan, or `manual=`); devices=4
    plans a pipeline over 4 devices; neither trains on one device. The program that runs is
    the one `alpa train` would run with the same flags; `.plan` shows it.

        trainer = alpa.Trainer(model, mesh="2x2", optimizer="adamw", lr=1e-3)
        loss = trainer.step({"x": x, "labels": y})     # NumPy arrays, the whole batch
        trainer.train(100, data_fn=lambda step: batch(step), callback=print)
        trainer.weights()["l0.w"]                      # numpy.ndarray
    """

    def __init__(self, model: Model, *, mesh: Union[str, tuple, None] = None,
                 devices: Optional[int] = None, optimizer: str = "adamw", lr: float = 1e-3,
                 momentum: float = 0.9, weight_decay: float = 0.0, manual: str = "auto",
                 micro_batches: int = 0, schedule: Optional[str] = None,
                 cluster: str = "local", seed: int = 0, threads: int = 0):
        if not isinstance(model, Model):
            raise Error(f"Trainer: expected an alpa.Model, got {type(model).__name__}",
                        "alpa.load_model() makes one", "invalid_argument")
        _check_int("Trainer: seed", seed)
        _check_int("Trainer: threads", threads)
        if seed < 0:
            raise Error(f"Trainer: seed must be >= 0, got {seed}", "", "invalid_argument")
        args = _parallel_args(model, cluster, mesh, devices, manual, micro_batches, schedule,
                              None, 0.0, optimizer, lr)
        if not 0.0 <= momentum <= 1.0:
            raise Error(f"Trainer: momentum must lie in [0, 1], got {momentum}", "",
                        "invalid_argument")
        if not weight_decay >= 0.0:
            raise Error(f"Trainer: weight_decay must be >= 0, got {weight_decay}", "",
                        "invalid_argument")
        args.momentum = float(momentum)
        args.weight_decay = float(weight_decay)
        self._core = _core._Trainer(model, args, seed, threads)

    @property
    def model(self) -> Model:
        return self._core.model

    @property
    def plan(self) -> Plan:
        """The compiled plan that runs (stages, layouts, predictions on the cluster model)."""
        return self._core.plan

    @property
    def inputs(self) -> Dict[str, tuple]:
        """The data inputs a step needs: {name: (shape, dtype)}, the whole batch."""
        return self._core.inputs

    @property
    def steps_done(self) -> int:
        return self._core.steps_done

    def step(self, data: Dict[str, "object"]) -> float:
        """Runs one training step on `data` ({input name: array of the whole batch}); returns
        the loss (the mean over micro-batches)."""
        if not isinstance(data, dict):
            raise Error(f"step: expected a dict of arrays, got {type(data).__name__}",
                        f"pass {{name: array}} for the inputs {sorted(self.inputs)}",
                        "invalid_argument")
        return self._core.step(data)

    def synthetic_batch(self, step: int) -> Dict[str, "object"]:
        """The built-in synthetic (learnable) data of step `step`, as `alpa train` uses it."""
        _check_int("synthetic_batch: step", step)
        return self._core.synthetic_batch(step)

    def train(self, steps: int, data_fn: Optional[Callable[[int], Dict[str, "object"]]] = None,
              callback: Optional[Callable[[Progress], Optional[bool]]] = None) -> List[float]:
        """Runs `steps` steps; returns their losses.

        data_fn(step) gives each step's data (step counts from 0 over this trainer's life);
        without it the synthetic data of synthetic_batch(step) is used. callback(progress)
        is called after every step with an alpa.Progress; returning False stops early.
        """
        _check_int("train: steps", steps)
        if steps < 1:
            raise Error(f"train: steps must be >= 1, got {steps}", "", "invalid_argument")
        losses: List[float] = []
        last = self.steps_done + steps
        for _ in range(steps):
            index = self.steps_done
            data = data_fn(index) if data_fn is not None else self.synthetic_batch(index)
            t0 = _time.perf_counter()
            loss = self.step(data)
            seconds = _time.perf_counter() - t0
            losses.append(loss)
            if callback is not None:
                if callback(Progress(index + 1, last, loss, seconds)) is False:
                    break
        return losses

    def weights(self) -> Dict[str, "object"]:
        """The weights now, whole: {name: numpy.float32 array}."""
        return self._core.weights()

    def optimizer_state(self) -> Dict[str, "object"]:
        """The optimizer's state (moments, step count), whole: {name: numpy array}."""
        return self._core.optimizer_state()

    def load_weights(self, weights: Dict[str, "object"], strict: bool = True) -> None:
        """Replaces weights by name (arrays of their exact shapes); the optimizer state is
        kept. strict: every weight must be given."""
        if not isinstance(weights, dict):
            raise Error(f"load_weights: expected a dict of arrays, got {type(weights).__name__}",
                        "pass {name: array}, e.g. trainer.weights()", "invalid_argument")
        self._core.load_weights(weights, bool(strict))

    def export_onnx(self, path: Union[str, "_os.PathLike[str]"]) -> None:
        """ONNX models: writes the model's file with the weights now as its initializers
        (same graph), which PyTorch or onnxruntime load like the original."""
        self._core.export_onnx(_os.fspath(path))

    def __repr__(self) -> str:
        return repr(self._core)


def _check_int(what, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise Error(f"{what} must be an integer, got {value!r}", "", "invalid_argument")


def _mesh_text(mesh) -> str:
    if mesh is None:
        return ""
    if isinstance(mesh, str):
        return mesh
    if isinstance(mesh, tuple) and len(mesh) == 2 and all(
            isinstance(n, int) and not isinstance(n, bool) for n in mesh):
        return f"{mesh[0]}x{mesh[1]}"
    raise Error(f"mesh must be \"AxB\" or a pair of integers, got {mesh!r}",
                'e.g. mesh="2x2" or mesh=(2, 2)', "invalid_argument")


def _parallel_args(model, cluster, mesh, devices, manual, micro_batches, schedule, choose,
                   memory_budget_gb, optimizer, lr):
    if not isinstance(model, Model):
        raise Error(f"expected an alpa.Model, got {type(model).__name__}",
                    "alpa.load_model() makes one", "invalid_argument")
    _check_int("devices", devices, allow_none=True)
    _check_int("micro_batches", micro_batches)
    if mesh is not None and devices is not None:
        raise Error("give either mesh= (one mesh) or devices= (a pipeline), not both", "",
                    "invalid_argument")
    if devices is not None and devices < 1:
        raise Error(f"devices must be >= 1, got {devices}", "", "invalid_argument")
    if schedule is not None and schedule not in _SCHEDULES:
        raise Error(f"unknown schedule {schedule!r}", "use '1f1b' or 'gpipe'", "invalid_argument")
    if choose is not None and choose not in _CHOICES:
        raise Error(f"unknown choice {choose!r}", "use 'simulation' or 'planner'",
                    "invalid_argument")
    if optimizer not in _OPTIMIZERS:
        raise Error(f"unknown optimizer {optimizer!r}", "use 'adamw' or 'sgd'", "invalid_argument")
    if not (isinstance(lr, (int, float)) and lr > 0 and lr < float("inf")):
        raise Error(f"lr must be a positive number, got {lr!r}", "", "invalid_argument")
    if not (isinstance(memory_budget_gb, (int, float)) and memory_budget_gb >= 0):
        raise Error(f"memory_budget_gb must be >= 0, got {memory_budget_gb!r}", "",
                    "invalid_argument")
    if isinstance(cluster, _os.PathLike):
        cluster = _os.fspath(cluster)
    if isinstance(manual, _os.PathLike):
        manual = _os.fspath(manual)
    args = _core._ParallelArgs()
    args.cluster = cluster
    args.mesh = _mesh_text(mesh)
    args.devices = devices or 0
    args.plan = manual
    args.micro_batches = micro_batches
    args.schedule = schedule or ""
    args.choose = choose or ""
    args.memory_budget_gb = float(memory_budget_gb)
    args.optimizer = optimizer
    args.lr = float(lr)
    return args
