"""The fused CPU tensor product against e3nn's own code (values, gradients, layout)."""

from __future__ import annotations

import shutil

import pytest
import torch
from e3nn import o3

from mdnext.models import tensor_product
from mdnext.models.tensor_product import EdgeTensorProduct, fused_kernel

CASES = [
    ("16x0e + 8x1o + 4x2e", 2),  # the default model
    ("3x0e + 2x0o + 2x1e + 3x1o + 2x2e + 1x3o", 3),  # parities, l = 3 (7 components)
]


def _product(irreps: str, lmax: int, dtype: torch.dtype) -> EdgeTensorProduct:
    """Built in ``dtype`` (e3nn's 3j constants are made in the default dtype)."""
    hidden = o3.Irreps(irreps)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return EdgeTensorProduct(hidden, o3.Irreps.spherical_harmonics(lmax), {ir for _, ir in hidden})
    finally:
        torch.set_default_dtype(default)


def _inputs(tp: EdgeTensorProduct, edges: int, nodes: int, dtype: torch.dtype, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(edges, tp.irreps_in1.dim, dtype=dtype, generator=generator)
    vectors = torch.randn(edges, 3, dtype=dtype, generator=generator)
    sh = o3.spherical_harmonics(tp.irreps_in2, vectors, normalize=True, normalization="component")
    weight = torch.randn(edges, tp.weight_numel, dtype=dtype, generator=generator)
    centre = torch.randint(0, nodes, (edges,), generator=generator)
    return x, sh, weight, centre


def _e3nn_summed(tp: EdgeTensorProduct, out, x, sh, weight, centre):
    return out.index_add(0, centre, o3.TensorProduct.forward(tp, x, sh, weight))


@pytest.fixture(scope="module")
def kernel():
    if fused_kernel() is None:
        pytest.skip("the fused kernel could not be built here (no C++ compiler?)")
    return fused_kernel()


def test_kernel_builds_where_a_compiler_exists():
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    assert fused_kernel() is not None


@pytest.mark.parametrize("irreps,lmax", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_fused_matches_e3nn_values_and_gradients(kernel, irreps, lmax, dtype, tol):
    tp = _product(irreps, lmax, dtype)
    x, sh, weight, centre = _inputs(tp, 300, 40, dtype)
    inputs = [t.requires_grad_() for t in (x, sh, weight)]
    out = torch.zeros(40, tp.irreps_out.dim, dtype=dtype)
    assert tp.uses_fused_kernel(x)
    fused = tp.add_summed(out, *inputs, centre)
    reference = _e3nn_summed(tp, out, *inputs, centre)
    scale = float(reference.detach().abs().max())
    assert torch.allclose(fused, reference, atol=tol * scale, rtol=0)
    upstream = torch.randn_like(reference)
    for a, b in zip(torch.autograd.grad(fused, inputs, upstream), torch.autograd.grad(reference, inputs, upstream)):
        assert torch.allclose(a, b, atol=tol * float(b.detach().abs().max()), rtol=0)


def test_gradcheck_float64(kernel):
    tp = _product(*CASES[1], torch.float64)
    x, sh, weight, centre = _inputs(tp, 7, 3, torch.float64, seed=1)
    out = torch.zeros(3, tp.irreps_out.dim, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda *a: tp.add_summed(out, *a, centre),
                                    [t.requires_grad_() for t in (x, sh, weight)])


def test_without_autograd_the_sums_accumulate_in_place(kernel):
    tp = _product(*CASES[0], torch.float32)
    x, sh, weight, centre = _inputs(tp, 100, 10, torch.float32)
    out = torch.zeros(10, tp.irreps_out.dim)
    with torch.no_grad():
        first = tp.add_summed(out, x[:60], sh[:60], weight[:60], centre[:60])
        both = tp.add_summed(first, x[60:], sh[60:], weight[60:], centre[60:])
    assert both is out
    assert torch.allclose(out, _e3nn_summed(tp, torch.zeros_like(out), x, sh, weight, centre), atol=1e-5)


def test_outputs_are_grouped_by_irrep():
    tp = _product(*CASES[0], torch.float32)
    assert str(tp.irreps_out.simplify()) == "28x0e+36x1o+32x2e"


def test_switched_off_uses_e3nn(monkeypatch):
    monkeypatch.setenv("MDNEXT_FUSED_KERNELS", "0")
    tensor_product.fused_kernel.cache_clear()
    try:
        tp = _product(*CASES[0], torch.float32)
        x, sh, weight, centre = _inputs(tp, 50, 5, torch.float32)
        assert not tp.uses_fused_kernel(x)
        expected = _e3nn_summed(tp, torch.zeros(5, tp.irreps_out.dim), x, sh, weight, centre)
        assert torch.equal(tp.add_summed(torch.zeros(5, tp.irreps_out.dim), x, sh, weight, centre), expected)
    finally:
        tensor_product.fused_kernel.cache_clear()


def test_gradients_without_edge_gradient(kernel):
    """Training case: the edge harmonics need no gradient (the kernel then skips that part)."""
    tp = _product(*CASES[0], torch.float64)
    x, sh, weight, centre = _inputs(tp, 200, 20, torch.float64, seed=2)
    inputs = [x.requires_grad_(), weight.requires_grad_()]
    out = torch.zeros(20, tp.irreps_out.dim, dtype=torch.float64)
    fused = tp.add_summed(out, x, sh, weight, centre)
    reference = _e3nn_summed(tp, out, x, sh, weight, centre)
    upstream = torch.randn_like(reference)
    for a, b in zip(torch.autograd.grad(fused, inputs, upstream), torch.autograd.grad(reference, inputs, upstream)):
        assert torch.allclose(a, b, atol=1e-12 * float(b.abs().max()), rtol=0)


def test_wrong_shapes_and_harmonic_multiplicity_are_refused():
    tp = _product(*CASES[0], torch.float32)
    x, sh, weight, centre = _inputs(tp, 10, 4, torch.float32)
    out = torch.zeros(4, tp.irreps_out.dim)
    with pytest.raises(ValueError, match="last dimensions"):
        tp.add_summed(out, x[:, :3], sh, weight, centre)
    with pytest.raises(ValueError, match="last dimensions"):
        tp.add_summed(out, x, sh, weight[:, :2], centre)
    with pytest.raises(ValueError, match="multiplicity 1"):
        EdgeTensorProduct(o3.Irreps("4x0e"), o3.Irreps("2x0e + 1x1o"), {o3.Irrep("0e")})
