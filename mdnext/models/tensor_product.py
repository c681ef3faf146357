"""The per-edge tensor product of the interaction layers, with a fused CPU kernel.

:class:`EdgeTensorProduct` is e3nn's ``o3.TensorProduct`` with one ``uvu`` instruction (one
weight per channel, from the radial MLP) for every path from a node-feature block and an
edge spherical harmonic to a kept output irrep. For every edge e, path ``l₁ ⊗ l₂ → l₃`` and
channel u of the input block,

    out[e, path, u, k] = w[e, path, u] · α_path Σ_ij C_ijk x[e, u, i] Y_j(r̂_e),

with C e3nn's Wigner 3j symbols and α_path e3nn's path weight. On CPU the product runs in a
small compiled kernel (``tensor_product_cpu.cpp``, built on first use with
``torch.utils.cpp_extension``): the edge factor ``B[e, i, (path, k)] = α Σ_j C_ijk Y_j`` of a
block is one matrix product for all its paths, and the kernel then contracts every channel
with it in one pass over the edge, writing e3nn's layout directly; the backward pass is the
same loop run in reverse. e3nn's generic code contracts with the 3j tensor once per path and
channel block, in many small tensor operations: on the tutorial's polymer (132 edges per
12-bead frame) a training step of the default model is ~3x faster with the kernel
(``benchmarks/tutorial.py``). The results are the same up to float rounding
(``tests/test_tensor_product.py``). Elsewhere (CUDA, or no C++ compiler, or with
``MDNEXT_FUSED_KERNELS=0`` in the environment) e3nn's own code runs.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from e3nn import o3

from mdnext.errors import first_line

#: The kernel's source, next to this module.
KERNEL_SOURCE = Path(__file__).with_name("tensor_product_cpu.cpp")


@functools.cache
def fused_kernel() -> Any | None:
    """The compiled CPU kernel module, or None where it is switched off or cannot be built.

    The first call in a fresh environment compiles it (about 25 s; cached by PyTorch under
    ``$TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``); a failure is one
    warning, after which e3nn's code is used.
    """
    if os.environ.get("MDNEXT_FUSED_KERNELS", "1") == "0":
        return None
    try:
        import ninja
        from torch.utils import cpp_extension

        # PyTorch runs `ninja` from PATH, which lacks the virtualenv's bin/ when it is not activated.
        if ninja.BIN_DIR not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ.get("PATH", "")])
        return cpp_extension.load(name="mdnext_tensor_product_cpu", sources=[str(KERNEL_SOURCE)],
                                  extra_cflags=["-O3"], verbose=False)
    except Exception as exc:  # noqa: BLE001 - no compiler, no ninja, a read-only cache: all mean "use e3nn"
        warnings.warn(f"mdnext: could not build the fused CPU tensor product ({first_line(exc)}); using e3nn's "
                      "slower code",
                      RuntimeWarning, stacklevel=2)
        return None


class _FusedSummedProduct(torch.autograd.Function):
    """Autograd wrapper of the kernel: messages summed over centres (first derivatives only).

    (x, factor, weight, centre) → (n, out) sums; the backward kernel reads the gradient of
    the sums at each edge's centre instead of expanding it to one row per edge.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: torch.Tensor, weight: torch.Tensor, centre: torch.Tensor,
                n_nodes: int, blocks: torch.Tensor, paths: torch.Tensor, out_dim: int) -> torch.Tensor:
        ctx.save_for_backward(x, factor, weight, centre, blocks, paths)
        messages = fused_kernel().forward(x, factor, weight, blocks, paths, out_dim)
        return messages.new_zeros(n_nodes, out_dim).index_add_(0, centre, messages)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_summed: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, factor, weight, centre, blocks, paths = ctx.saved_tensors
        grad_x, grad_factor, grad_weight = fused_kernel().backward(grad_summed, centre, x, factor, weight,
                                                                   blocks, paths, ctx.needs_input_grad[1])
        return grad_x, grad_factor if ctx.needs_input_grad[1] else None, grad_weight, None, None, None, None, None


class EdgeTensorProduct(o3.TensorProduct):
    """Node features (gathered on edges) ⊗ edge spherical harmonics, weights per edge and channel.

    Args:
        irreps_in: Node feature irreps.
        irreps_sh: Spherical-harmonic irreps of the edges.
        targets: Output irreps to keep; paths to any other irrep are left out.

    The outputs (``irreps_out``) are one ``mul × l₃`` block per path, grouped by irrep:
    ``irreps_out.simplify()`` describes the same data with one block per irrep. The weights
    (``weight_numel`` per edge) are ordered path by path, in the order of the input blocks and
    then of the harmonics.
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, targets: set[o3.Irrep]) -> None:
        irreps_in, irreps_sh = o3.Irreps(irreps_in), o3.Irreps(irreps_sh)
        if any(mul != 1 for mul, _ in irreps_sh):
            raise ValueError(f"edge harmonics must have multiplicity 1 (one copy per l), got {irreps_sh}")
        paths = [(i, j, mul, ir_out) for i, (mul, ir_in) in enumerate(irreps_in) for j, (_, ir_sh) in enumerate(irreps_sh)
                 for ir_out in ir_in * ir_sh if ir_out in targets]
        # Outputs grouped by irrep (so that irreps_out.simplify() has one block per irrep and
        # the linear layer after the sum is a few large products); weights in path order.
        by_irrep = sorted(range(len(paths)), key=lambda p: (paths[p][3].l, paths[p][3].p))
        irreps_out = [(paths[p][2], paths[p][3]) for p in by_irrep]
        instructions = [(i, j, by_irrep.index(p), "uvu", True) for p, (i, j, _, _) in enumerate(paths)]
        super().__init__(irreps_in, irreps_sh, o3.Irreps(irreps_out), instructions,
                         shared_weights=False, internal_weights=False)
        self._build_kernel_tables()

    def _build_kernel_tables(self) -> None:
        """The kernel's edge-factor matrix and its block and path tables (see the .cpp file)."""
        sh_offsets = [s.start for s in self.irreps_in2.slices()]
        out_offsets = [s.start for s in self.irreps_out.slices()]
        factors, blocks, paths = [], [], []
        factor_offset = weight_offset = 0
        for i, ((mul, ir_in), in_slice) in enumerate(zip(self.irreps_in1, self.irreps_in1.slices())):
            block_paths = [ins for ins in self.instructions if ins.i_in1 == i]
            width = sum(self.irreps_out[ins.i_out].ir.dim for ins in block_paths)
            factor = torch.zeros(self.irreps_in2.dim, ir_in.dim, width, dtype=torch.float64)
            blocks.append((in_slice.start, mul, ir_in.dim, width, len(block_paths), factor_offset, weight_offset,
                           len(paths)))
            column = 0
            for ins in block_paths:
                ir_sh, ir_out = self.irreps_in2[ins.i_in2].ir, self.irreps_out[ins.i_out].ir
                coupling = ins.path_weight * o3.wigner_3j(ir_in.l, ir_sh.l, ir_out.l, dtype=torch.float64)
                sh_rows = slice(sh_offsets[ins.i_in2], sh_offsets[ins.i_in2] + ir_sh.dim)
                factor[sh_rows, :, column:column + ir_out.dim] = coupling.permute(1, 0, 2)
                paths.append((column, ir_out.dim, out_offsets[ins.i_out]))
                column += ir_out.dim
            factors.append(factor.reshape(self.irreps_in2.dim, ir_in.dim * width))
            factor_offset += ir_in.dim * width
            weight_offset += mul * len(block_paths)
        # e3nn orders the weights instruction by instruction; the instructions are grouped by
        # input block, so each block's weights are one contiguous (paths, mul) run.
        assert [ins.i_in1 for ins in self.instructions] == sorted(ins.i_in1 for ins in self.instructions)
        #: (sh dim, Σ dim × width) float64 on the CPU; a plain attribute, so that converting the
        #: module to float32 does not round it for a float64 model later.
        self.edge_factor = torch.cat(factors, dim=1)
        self.register_buffer("kernel_blocks", torch.tensor(blocks, dtype=torch.int64).view(-1, 8), persistent=False)
        self.register_buffer("kernel_paths", torch.tensor(paths, dtype=torch.int64).view(-1, 3), persistent=False)

    def uses_fused_kernel(self, x: torch.Tensor) -> bool:
        """Whether :meth:`add_summed` runs the compiled kernel for inputs like ``x``."""
        return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and fused_kernel() is not None

    def add_summed(self, out: torch.Tensor, x: torch.Tensor, edge_sh: torch.Tensor, weight: torch.Tensor,
                   centre: torch.Tensor) -> torch.Tensor:
        """``out`` plus the messages of these edges summed over each edge's centre.

        Adds in place (and returns ``out``) when autograd is not recording, so that a large
        graph processed in blocks of edges reuses one buffer; otherwise returns a new tensor.

        Args:
            out: (n, irreps_out.dim) running sums.
            x: (E, irreps_in.dim) features of each edge's neighbour.
            edge_sh: (E, irreps_sh.dim) spherical harmonics of the edge vectors.
            weight: (E, weight_numel) per-edge weights (e3nn's order).
            centre: (E,) node receiving each edge's message.
        """
        expected = (self.irreps_out.dim, self.irreps_in1.dim, self.irreps_in2.dim, self.weight_numel)
        found = (out.shape[-1], x.shape[-1], edge_sh.shape[-1], weight.shape[-1])
        if found != expected:
            raise ValueError(f"EdgeTensorProduct.add_summed: last dimensions (out, x, edge_sh, weight) {found}, "
                             f"expected {expected}")
        recording = torch.is_grad_enabled() and any(t.requires_grad for t in (out, x, edge_sh, weight))
        if not self.uses_fused_kernel(x):
            messages = self(x, edge_sh, weight)
            return out.index_add(0, centre, messages) if recording else out.index_add_(0, centre, messages)
        factor = edge_sh @ self.edge_factor.to(edge_sh.dtype)  # (E, Σ dim × width)
        if not recording:
            return out.index_add_(0, centre, fused_kernel().forward(x, factor, weight, self.kernel_blocks,
                                                                    self.kernel_paths, self.irreps_out.dim))
        summed = _FusedSummedProduct.apply(x, factor, weight, centre, out.shape[0], self.kernel_blocks,
                                           self.kernel_paths, self.irreps_out.dim)
        return out + summed
