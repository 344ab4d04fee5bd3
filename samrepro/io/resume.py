"""Resuming an interrupted run: the pruning pass layer by layer, the evaluation dataset by dataset.

The sequential pass of docs/method.md §1 is a chain: layer i is pruned on the outputs of the
already pruned layers < i. After each decoder layer the pass stores that layer's weights
(pruned), the hidden states it produced (the next layer's inputs) and the report so far; a
run started again with the same key loads them and continues with the next layer, so it ends
with exactly the numbers of an uninterrupted run. Each finished perplexity is stored too.

One folder per run, cache_dir()/checkpoints/<digest of the key>/:

    state.json               the key, and the sha256 of every file below; the report so far
    layer-003.safetensors    layer 3's state dict after pruning
    inputs-004.safetensors   the hidden states entering layer 4 (only the latest are kept)
    eval-ptb.json            a finished perplexity, with the key

Everything is safetensors or JSON (no pickle), written atomically (files.write_bytes), and
checked on load: an entry whose key or checksum does not match, or that does not parse, is
reported with a warning and recomputed, never trusted. The folder is removed when the run
completes (RunCheckpoint.remove).

At scale the layers add up to the whole pruned model (LLaMA-2-70B in bf16: ~128 GiB, which
`samrepro plan` shows as the resume checkpoints' disk). SAMREPRO_RESUME limits them:
`on` (the default) stores every layer; `off` stores nothing (an interrupted run starts over);
a number N stores layers while the folder stays within N GiB, then stops storing (a run
interrupted later resumes after the last stored layer).

SAMREPRO_FAULT=<point> makes the process SIGKILL itself at that point (the tests' way of
interrupting a real run): `calibration` (inputs of layer 0 captured), `pruned-<i>` (layer i
pruned in memory, not yet stored), `layer-<i>` (layer i stored), `eval-<name>` (perplexity on
<name> computed, not yet stored).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import warnings

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from samrepro.io.cache import digest
from samrepro.errors import UserError
from samrepro.io.files import cache_dir, write_bytes, write_json

RESUME = "SAMREPRO_RESUME"  # how much disk the layer checkpoints may take


def resume_budget() -> float | None:
    """Bytes the layer checkpoints of a run may take: None for no limit (`on`, unset), 0 for
    none at all (`off`), else SAMREPRO_RESUME GiB."""
    value = os.environ.get(RESUME, "on").strip().lower()
    if value in ("on", ""):
        return None
    if value == "off":
        return 0.0
    try:
        gib = float(value)
    except ValueError:
        gib = -1.0
    if gib < 0:
        raise UserError(f"{RESUME}={value!r}: use on, off, or a number of GiB (e.g. 20)")
    return gib * 2**30


FORMAT = 1  # bump when the layout or meaning of checkpoints changes


def fault(point: str) -> None:
    """SIGKILL this process if SAMREPRO_FAULT names `point` (testing resumption)."""
    if os.environ.get("SAMREPRO_FAULT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


class Damaged(Exception):
    """A checkpoint file that is missing, foreign or does not match its checksum."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RunCheckpoint:
    """The checkpoints of one run, named by `key` (everything that determines its numbers)."""

    def __init__(self, key: dict):
        self.key = json.loads(json.dumps({**key, "format": FORMAT}))  # as stored in JSON
        self.folder = cache_dir() / "checkpoints" / digest(self.key)
        self.report: dict = {}  # the pass's per-matrix report so far (prune_model fills it)
        self.resumed_layers: list[int] = []
        self.resumed_evaluations: list[str] = []
        self._state = {"key": self.key, "layers": {}, "inputs": None, "report": {}}
        self.budget = resume_budget()  # bytes the layer checkpoints may take (None: no limit)
        self.stopped_storing = self.budget == 0

    # ---- files -------------------------------------------------------------------------

    def _discard(self, why: str) -> None:
        warnings.warn(f"ignoring the checkpoints in {self.folder} ({why}); recomputing",
                      stacklevel=3)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _write_tensors(self, name: str, tensors: dict[str, torch.Tensor]) -> str:
        data = save_tensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
        write_bytes(self.folder / name, data)
        return _sha256(data)

    def _read_tensors(self, name: str, sha256: str | None) -> dict[str, torch.Tensor]:
        try:
            data = (self.folder / name).read_bytes()
        except OSError as e:
            raise Damaged(f"{name}: {type(e).__name__}") from None
        if _sha256(data) != sha256:
            raise Damaged(f"{name} does not match its checksum")
        try:
            return load_tensors(data)
        except Exception as e:  # safetensors raises its own error types
            raise Damaged(f"{name} does not parse: {type(e).__name__}") from None

    def _read_state(self) -> dict | None:
        path = self.folder / "state.json"
        if not path.exists():
            return None
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._discard("state.json does not parse")
            return None
        if not isinstance(state, dict) or state.get("key") != self.key:
            self._discard("state.json belongs to another run")
            return None
        return state

    # ---- the layer-by-layer pass (pipeline.layer_by_layer calls these) -----------------

    def restore(self, layers: nn.ModuleList, calls: list) -> tuple[int, list]:
        """Load every stored layer into `layers`; return (first layer to compute, its inputs).

        `calls` are the freshly captured inputs of layer 0 ([(hidden, args, kwargs)]); the
        stored hidden states replace theirs. Nothing is changed unless everything checks out.
        """
        state = self._read_state()
        if state is None or state.get("inputs") is None:
            fault("calibration")
            return 0, calls
        done = state["inputs"]["layer"]
        try:
            if not 0 < done <= len(layers) or sorted(map(int, state["layers"])) != list(range(done)):
                raise Damaged("state.json lists an impossible set of layers")
            for i in range(done):  # first check every file, then change the model
                expected = {k: (v.shape, v.dtype) for k, v in layers[i].state_dict().items()}
                stored = self._read_tensors(f"layer-{i:03d}.safetensors", state["layers"][str(i)])
                if {k: (v.shape, v.dtype) for k, v in stored.items()} != expected:
                    raise Damaged(f"layer {i}'s stored tensors do not fit the model")
            hidden = None
            if done < len(layers):
                stored = self._read_tensors(f"inputs-{done:03d}.safetensors",
                                            state["inputs"]["sha256"])
                hidden = [stored.get(f"batch.{k}") for k in range(len(calls))]
                if len(stored) != len(calls) or any(
                        h is None or h.shape != x.shape or h.dtype != x.dtype
                        for h, (x, _, _) in zip(hidden, calls)):
                    raise Damaged(f"the stored inputs of layer {done} do not fit the calibration")
        except Damaged as e:
            self._discard(str(e))
            return 0, calls
        for i in range(done):
            layers[i].load_state_dict(self._read_tensors(f"layer-{i:03d}.safetensors",
                                                         state["layers"][str(i)]))
        if hidden is not None:
            calls = [(h.to(x.device), args, kwargs) for h, (x, args, kwargs) in zip(hidden, calls)]
        self._state = state
        self.report.update(state["report"])
        self.resumed_layers = list(range(done))
        print(f"samrepro: resuming an interrupted run: layers 0-{done - 1} of {len(layers)} "
              f"read from {self.folder}", file=sys.stderr, flush=True)
        return done, calls

    def save(self, i: int, layer: nn.Module, calls: list, last: bool) -> None:
        """Store layer i (pruned) and the inputs of layer i + 1 (unless i is the `last`),
        while they fit the SAMREPRO_RESUME budget; past it, nothing more is stored."""
        fault(f"pruned-{i}")
        if self.stopped_storing:
            return
        if self.budget is not None:
            stored = sum(f.stat().st_size for f in self.folder.glob("layer-*.safetensors"))
            layer_bytes = sum(t.numel() * t.element_size() for t in layer.state_dict().values())
            inputs_bytes = 0 if last else sum(x.numel() * x.element_size() for x, _, _ in calls)
            if stored + layer_bytes + inputs_bytes > self.budget:
                self.stopped_storing = True
                warnings.warn(f"the resume checkpoints reached {RESUME}="
                              f"{self.budget / 2**30:g} GiB at layer {i}: later layers are not "
                              f"stored (an interruption resumes from layer {i})", stacklevel=2)
                return
        state = self._state
        state["layers"][str(i)] = self._write_tensors(f"layer-{i:03d}.safetensors",
                                                      layer.state_dict())
        sha = None if last else self._write_tensors(
            f"inputs-{i + 1:03d}.safetensors", {f"batch.{k}": x for k, (x, _, _) in enumerate(calls)})
        state["inputs"] = {"layer": i + 1, "sha256": sha}
        state["report"] = self.report
        write_json(self.folder / "state.json", state)  # the commit point
        (self.folder / f"inputs-{i:03d}.safetensors").unlink(missing_ok=True)
        fault(f"layer-{i}")

    # ---- evaluations --------------------------------------------------------------------

    def evaluation(self, name: str, compute) -> dict:
        """compute() the evaluation `name` (a perplexity, or accuracy) once per run; a stored
        one is read back."""
        path = self.folder / f"eval-{name}.json"
        if self.budget == 0:  # SAMREPRO_RESUME=off
            return compute()
        if path.exists():
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                entry = None
            if isinstance(entry, dict) and entry.get("key") == self.key and "value" in entry:
                self.resumed_evaluations.append(name)
                print(f"samrepro: resuming an interrupted run: evaluation {name} read from "
                      f"{self.folder}", file=sys.stderr, flush=True)
                return entry["value"]
            warnings.warn(f"ignoring a damaged or foreign evaluation checkpoint {path}; "
                          "recomputing", stacklevel=2)
        value = compute()
        fault(f"eval-{name}")
        write_json(path, {"key": self.key, "value": value})
        return value

    def remove(self) -> None:
        """The run is complete: its checkpoints are no longer needed."""
        shutil.rmtree(self.folder, ignore_errors=True)
