"""ASE calculator and MD driver for a trained mdnext model.

* :class:`MDNextCalculator` predicts each atom's displacement to the frame ``stride`` data
  frames ahead, as the property ``"displacement"`` ((N, 3) float64, Å) in ``calc.results`` and
  in ``atoms.arrays["mdnext_displacement"]``. It implements no energy, forces or stress: the
  model learns motion, not a potential, so ``atoms.get_forces()`` raises ASE's
  ``PropertyNotImplementedError``.
* :class:`LearnedDynamics` is an ASE :class:`~ase.md.md.MolecularDynamics` whose ``step()``
  moves the atoms by that displacement; ``attach()``, ``trajectory=``, ``logfile=`` and
  ``run(n)`` work as for any ASE integrator. Its frames equal :func:`mdnext.extrapolate`'s
  for the same model and seed frames.

How the calculator's history buffer is fed: it holds positions by *data-frame index* (frames
of the training data's time step ``dt``), at most the newest ``k * stride + 1`` of them.
``calc.push(atoms_or_positions, steps=1)`` adds a frame ``steps`` data frames after the newest
one (``steps=0`` replaces the newest); ``history=`` at construction pushes frames one data
frame apart, oldest first; ``calc.clear_history()`` empties the buffer (ASE's own ``reset()``
only drops cached results). ``calculate()`` never changes the buffer: when the atoms'
positions equal the newest buffered frame, that frame is the current one; otherwise the
atoms are taken as the frame one data frame after it. The model reads the current frame and
the frames ``stride, 2 stride, …, k stride`` data frames before it; their differences are
taken by minimum image under periodic boundaries, with the current cell.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.md.logger import MDLogger
from ase.md.md import MolecularDynamics
from torch_geometric.data import Batch, Data

from mdnext.checkpoint import TrainedModel
from mdnext.data import wrap_positions
from mdnext.errors import FramesError, InputError
from mdnext.neighbors import minimum_image
from mdnext.rollout import RolloutError
from mdnext.topology import chain_bonds, check_bonds

#: ``atoms.arrays`` key of the predicted displacement, (N, 3) Å.
DISPLACEMENT_KEY = "mdnext_displacement"

Frame = Atoms | np.ndarray


def _positions(frame: Frame) -> np.ndarray:
    """(N, 3) float64 positions of an ``Atoms`` or an array, Å."""
    positions = frame.get_positions() if isinstance(frame, Atoms) else frame
    return np.array(positions, dtype=np.float64)


class MDNextCalculator(Calculator):
    """Predicts displacements with a trained mdnext model (see the module for the buffer).

    Args:
        model: A :class:`~mdnext.checkpoint.TrainedModel` or the path of its checkpoint.
        history: Earlier frames, oldest first, one data frame apart: ``Atoms`` or (N, 3)
            arrays, or one (T, N, 3) array, Å. It may end with the current frame.
        bonds: The atoms' bonds for a model that uses the bond topology (``Atoms`` carry
            none): an (M, 2) array of atom index pairs, or ``"chain"`` for a linear chain in
            atom order.
        **kwargs: Passed to :class:`ase.calculators.calculator.Calculator`.
    """

    implemented_properties = ["displacement"]

    def __init__(self, model: TrainedModel | str | Path, history: Sequence[Frame] | np.ndarray | None = None,
                 bonds: np.ndarray | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trained = model if isinstance(model, TrainedModel) else TrainedModel.load(model)
        self.bonds = bonds
        self._frames: dict[int, np.ndarray] = {}
        self._newest: int | None = None
        for frame in [] if history is None else history:
            self.push(frame)

    @property
    def stride(self) -> int:
        """Data frames between the current frame and the predicted one."""
        return self.trained.stride

    @property
    def frames_needed(self) -> int:
        """Consecutive data frames a prediction reads, the current one included: ``k * stride + 1``."""
        return self.trained.history * self.stride + 1

    def push(self, frame: Frame, steps: int = 1) -> None:
        """Add ``frame`` ``steps`` data frames after the newest one (``steps=0``: replace it)."""
        positions = _positions(frame)
        if positions.ndim != 2 or positions.shape[1] != 3:
            raise InputError(f"a history frame must have shape (N, 3), got {positions.shape}")
        buffered = next(iter(self._frames.values()), None)
        if buffered is not None and positions.shape != buffered.shape:
            raise InputError(f"history frame has {len(positions)} atoms, the buffered frames {len(buffered)}")
        if int(steps) != steps or steps < 0:
            raise InputError(f"push steps must be a whole number >= 0, got {steps}")
        self._newest = 0 if self._newest is None else self._newest + int(steps)
        self._frames[self._newest] = positions
        oldest = self._newest - self.frames_needed + 1
        self._frames = {t: x for t, x in self._frames.items() if t >= oldest}
        self.reset()

    def sync(self, atoms: Atoms, steps: int = 1) -> None:
        """Push the atoms' positions (``steps`` as in :meth:`push`) unless they are the newest frame."""
        if not self.is_newest(atoms):
            self.push(atoms, steps)

    def is_newest(self, atoms: Atoms) -> bool:
        """Whether the atoms' positions equal the newest buffered frame exactly."""
        return self._newest is not None and np.array_equal(atoms.positions, self._frames[self._newest])

    def clear_history(self) -> None:
        """Forget every buffered frame and cached result."""
        self._frames, self._newest = {}, None
        self.reset()

    def window(self, atoms: Atoms) -> np.ndarray:
        """(N, k, 3) float64 past displacements for ``atoms``, newest first, Å (the batch's ``history``).

        Raises:
            InputError: The buffer lacks a frame the model reads, or the atom count differs.
        """
        positions = _positions(atoms)
        k, stride = self.trained.history, self.stride
        frames = dict(self._frames)
        buffered = next(iter(frames.values()), positions)
        if buffered.shape != positions.shape:
            raise InputError(f"the atoms have {len(atoms)} atoms, the history frames {len(buffered)}")
        if self.is_newest(atoms):
            current = self._newest
        else:  # the atoms are the frame one data frame after the newest buffered one
            current = 0 if self._newest is None else self._newest + 1
            frames[current] = positions
        lags = [current - j * stride for j in range(k, -1, -1)]
        missing = [t for t in lags if t not in frames]
        if missing:
            earlier = sum(1 for t in frames if t < current)
            raise InputError(
                f"model history {k} with stride {stride} needs the {self.frames_needed - 1} data frames before "
                f"the current one (calc.push(atoms) or history=, one data frame apart), got {earlier}"
            )
        used = np.stack([frames[t] for t in lags])
        past = torch.from_numpy(used[1:] - used[:-1])
        if atoms.pbc.any() and k:
            past = minimum_image(past, torch.from_numpy(atoms.cell.array.astype(np.float64)),
                                 torch.from_numpy(atoms.pbc.copy()))
        return past.flip(0).permute(1, 0, 2).contiguous().numpy()

    def species_codes(self, atoms: Atoms) -> torch.Tensor:
        """(N,) int64 codes of the atoms' chemical symbols into the model's species list."""
        known = self.trained.species
        index = {name: code for code, name in enumerate(known)}
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(index))
        if unknown:
            raise InputError(f"species {', '.join(unknown)} unknown to model {self.trained.model.name!r} "
                             f"(it knows {', '.join(known)})")
        return torch.tensor([index[s] for s in symbols], dtype=torch.long)

    def predict(self, atoms: Atoms) -> np.ndarray:
        """(N, 3) float64 predicted displacement to the frame ``stride`` data frames ahead, Å."""
        model = self.trained.model
        species = self.species_codes(atoms)
        history = self.window(atoms)
        tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
        device = torch.device("cpu") if tensor is None else tensor.device
        data = Data(
            pos=torch.from_numpy(_positions(atoms)), history=torch.from_numpy(history), species=species,
            cell=torch.from_numpy(atoms.cell.array.astype(np.float64)).unsqueeze(0),
            pbc=torch.from_numpy(atoms.pbc.copy()).reshape(1, 3),
        )
        if self.bonds is not None:
            pairs = chain_bonds(len(atoms)) if isinstance(self.bonds, str) and self.bonds == "chain" else self.bonds
            try:
                data.bond_index = torch.from_numpy(check_bonds(pairs, len(atoms))).T.contiguous()
            except FramesError as exc:
                raise InputError(f"bonds: {exc}") from None
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                displacement = model(Batch.from_data_list([data]).to(device)).to(torch.float64).cpu().numpy()
        finally:
            model.train(was_training)
        if not np.isfinite(displacement).all():
            raise RolloutError(f"model {model.name!r} predicted non-finite displacements")
        return displacement.reshape(len(atoms), 3)

    def calculate(self, atoms: Atoms | None = None, properties: Sequence[str] = ("displacement",),
                  system_changes: Sequence[str] = all_changes) -> None:
        """Put the predicted displacement in ``results`` and ``atoms.arrays`` (see the module)."""
        super().calculate(atoms, properties, system_changes)
        displacement = self.predict(self.atoms)
        self.results["displacement"] = displacement
        if atoms is not None:
            atoms.set_array(DISPLACEMENT_KEY, displacement.copy(), float, (3,))


class _DisplacementLogger(MDLogger):
    """ASE's MD log; the potential energy is unknown to a learned dynamics and shows as nan."""

    def _potential_energy(self) -> float:
        return float("nan")


class LearnedDynamics(MolecularDynamics):
    """ASE molecular dynamics driven by a trained mdnext model.

    Each step moves the atoms by the predicted displacement (constraints apply), pushes the new
    frame into the calculator's buffer and sets the velocities to displacement / timestep, a
    finite-difference velocity (so ASE's MD log shows a kinetic energy and temperature; the
    potential energy shows as nan). At construction the velocities become the finite
    difference of the last ``stride`` data frames when the history holds them. The cell is
    kept, and positions are not wrapped unless ``wrap=True``.

    Args:
        atoms: The current frame; gets an :class:`MDNextCalculator` as ``atoms.calc``.
        model: A :class:`~mdnext.checkpoint.TrainedModel`, its checkpoint path, or an
            :class:`MDNextCalculator` (already fed).
        history: Earlier frames, oldest first, one data frame apart (``Atoms`` or (T, N, 3)
            Å); it may end with the current frame. ``k * stride + 1`` frames with the current
            one are needed.
        timestep: ASE time units; default and only allowed value ``stride * dt`` of the model
            (``dt`` ps × 1000 × ``ase.units.fs``); required when the model's dt is unknown.
        wrap: Wrap positions into the box along periodic directions after each step.
        **md_kwargs: ``trajectory``, ``logfile``, ``loginterval``, … as for
            :class:`~ase.md.md.MolecularDynamics`.
    """

    def __init__(self, atoms: Atoms, model: TrainedModel | str | Path | MDNextCalculator,
                 history: Sequence[Frame] | np.ndarray | None = None, timestep: float | None = None,
                 *, wrap: bool = False, **md_kwargs: Any) -> None:
        calc = model if isinstance(model, MDNextCalculator) else MDNextCalculator(model)
        for frame in [] if history is None else history:
            calc.push(frame)
        calc.sync(atoms)
        calc.species_codes(atoms)
        calc.window(atoms)  # fails early on too short a history
        self.calc, self.wrap = calc, bool(wrap)
        atoms.calc = calc
        logfile = md_kwargs.pop("logfile", None)
        super().__init__(atoms, self._timestep(calc.trained, timestep), **md_kwargs)
        if calc.trained.history:
            previous = calc.window(atoms)[:, 0]
            atoms.set_velocities(previous / self.dt)
        if logfile:
            logger = _DisplacementLogger(dyn=self, atoms=atoms, logfile=logfile, comm=self.comm)
            self.attach(self.closelater(logger), md_kwargs.get("loginterval", 1))

    @staticmethod
    def _timestep(trained: TrainedModel, timestep: float | None) -> float:
        """The MD time step in ASE units: the model's ``stride * dt``, checked against ``timestep``."""
        if trained.dt is None:
            if timestep is None:
                raise InputError("the model's dt is unknown: pass timestep= (ASE time units, e.g. 5 * ase.units.fs)")
            return float(timestep)
        model_step = trained.stride * trained.dt * 1000.0 * units.fs
        if timestep is not None and not np.isclose(timestep, model_step, rtol=1e-6, atol=0.0):
            raise InputError(
                f"timestep {timestep / units.fs:g} fs differs from the model's fixed step "
                f"{trained.stride} × {trained.dt:g} ps = {model_step / units.fs:g} fs"
            )
        return model_step

    def todict(self) -> dict[str, Any]:
        return {**super().todict(), "mdnext_model": self.calc.trained.model.name, "stride": self.calc.stride}

    def _refresh_properties(self) -> None:
        """Predict the next displacement (ASE's default would ask for forces, which are not implemented)."""
        self.calc.sync(self.atoms, steps=0)
        self.calc.get_property("displacement", self.atoms)

    def step(self) -> None:
        """Move the atoms ``stride`` data frames ahead by the predicted displacement."""
        atoms = self.atoms
        self.calc.sync(atoms, steps=0)  # an observer may have edited the current frame
        displacement = self.calc.get_property("displacement", atoms)
        old = atoms.get_positions()
        atoms.set_positions(old + displacement)
        moved = atoms.get_positions() - old
        if self.wrap and atoms.pbc.any():
            atoms.positions = wrap_positions(torch.from_numpy(atoms.get_positions()),
                                             torch.from_numpy(atoms.cell.array.copy()), atoms.pbc).numpy()
        atoms.set_velocities(moved / self.dt)
        self.calc.push(atoms, steps=self.calc.stride)
