// Fused CPU kernels of mdnext.models.tensor_product.EdgeTensorProduct (forward and backward).
//
// Per edge e, input block b (mul channels u of dimension dim) and output column c of the
// block (path p, component k of the path's irrep, dimension d):
//     t[u, c]  = sum_i x[e, b, u, i] * factor[e, b, i, c]
//     out[e, out_offset(p) + u * d + k] = w[e, b, p, u] * t[u, c]
// (e3nn's layout: path by path, each `mul x d` block channel-major). The forward pass writes
// one row of messages per edge; the backward pass reads the gradient of the messages' sums
// over centres, row centre[e] of grad_summed, so the per-edge gradient is never stored. Edges
// are independent: the loops run in parallel over edges and write disjoint rows (no atomics,
// deterministic for any number of threads).
//
// Block table (int64, one row of 8 per block):
//   in_offset, mul, dim, width, n_paths, factor_offset, weight_offset, first_path
// Path table (int64, one row of 3 per path, all blocks concatenated):
//   first column in the block, dim d of the path's irrep, out_offset

#include <torch/extension.h>

#include <algorithm>
#include <vector>

namespace {

constexpr int64_t kBlockFields = 8;
constexpr int64_t kPathFields = 3;

struct Block {
  int64_t in_offset, mul, dim, width, n_paths, factor_offset, weight_offset, first_path;
};

struct Tables {
  std::vector<Block> blocks;
  const int64_t* paths;
  int64_t max_block = 1;  // largest mul * width
};

Tables read_tables(const at::Tensor& block_table, const at::Tensor& path_table) {
  TORCH_CHECK(block_table.dim() == 2 && block_table.size(1) == kBlockFields && block_table.is_contiguous(),
              "block table must be a contiguous (B, 8) tensor");
  TORCH_CHECK(path_table.dim() == 2 && path_table.size(1) == kPathFields && path_table.is_contiguous(),
              "path table must be a contiguous (P, 3) tensor");
  Tables tables;
  const int64_t* v = block_table.data_ptr<int64_t>();
  for (int64_t b = 0; b < block_table.size(0); ++b) {
    const int64_t* r = v + b * kBlockFields;
    tables.blocks.push_back({r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]});
    tables.max_block = std::max(tables.max_block, r[1] * r[3]);
  }
  tables.paths = path_table.data_ptr<int64_t>();
  return tables;
}

void check_inputs(const at::Tensor& x, const at::Tensor& factor, const at::Tensor& weight) {
  TORCH_CHECK(x.device().is_cpu() && factor.device().is_cpu() && weight.device().is_cpu(),
              "the fused tensor product runs on CPU tensors");
  TORCH_CHECK(x.dim() == 2 && factor.dim() == 2 && weight.dim() == 2, "inputs must be 2-D");
  TORCH_CHECK(x.size(0) == factor.size(0) && x.size(0) == weight.size(0), "inputs must have one row per edge");
  TORCH_CHECK(x.scalar_type() == factor.scalar_type() && x.scalar_type() == weight.scalar_type(),
              "inputs must share one dtype");
}

// t[u * width + c] for all channels u of block b of one edge (DIM = 2l + 1 of the block, or 0).
template <int DIM, typename scalar_t>
inline void contract_block(const Block& b, const scalar_t* __restrict__ x, const scalar_t* __restrict__ factor,
                           scalar_t* __restrict__ t) {
  const int64_t dim = DIM > 0 ? DIM : b.dim, width = b.width;
  for (int64_t u = 0; u < b.mul; ++u) {
    const scalar_t* xu = x + u * dim;
    scalar_t* tu = t + u * width;
    for (int64_t c = 0; c < width; ++c) {
      scalar_t sum = xu[0] * factor[c];
      for (int64_t i = 1; i < dim; ++i) sum += xu[i] * factor[i * width + c];
      tu[c] = sum;
    }
  }
}

// The common degrees (1, 3, 5, 7 components) with their loops unrolled; DIM = 0 reads dim at run time.
template <typename scalar_t>
inline void contract(const Block& b, const scalar_t* x, const scalar_t* factor, scalar_t* t) {
  switch (b.dim) {
    case 1: return contract_block<1>(b, x, factor, t);
    case 3: return contract_block<3>(b, x, factor, t);
    case 5: return contract_block<5>(b, x, factor, t);
    case 7: return contract_block<7>(b, x, factor, t);
    default: return contract_block<0>(b, x, factor, t);
  }
}

// From g = d loss / d t of block b: grad_x = g · factorᵀ per channel, grad_factor += xᵀ · g.
// grad_factor == nullptr: the factor needs no gradient (edge vectors without one, as in training).
template <int DIM, typename scalar_t>
inline void contract_backward_block(const Block& b, const scalar_t* __restrict__ x,
                                    const scalar_t* __restrict__ factor, const scalar_t* __restrict__ g,
                                    scalar_t* __restrict__ grad_x, scalar_t* __restrict__ grad_factor) {
  const int64_t dim = DIM > 0 ? DIM : b.dim, width = b.width;
  scalar_t fixed_sums[DIM > 0 ? DIM : 1];
  std::vector<scalar_t> runtime_sums(DIM > 0 ? 0 : dim);
  scalar_t* sums = DIM > 0 ? fixed_sums : runtime_sums.data();
  for (int64_t u = 0; u < b.mul; ++u) {
    const scalar_t* xu = x + u * dim;
    const scalar_t* gu = g + u * width;
    std::fill(sums, sums + dim, scalar_t(0));
    for (int64_t c = 0; c < width; ++c) {
      const scalar_t gc = gu[c];
      for (int64_t i = 0; i < dim; ++i) sums[i] += gc * factor[i * width + c];
      if (grad_factor != nullptr) {
        for (int64_t i = 0; i < dim; ++i) grad_factor[i * width + c] += xu[i] * gc;
      }
    }
    for (int64_t i = 0; i < dim; ++i) grad_x[u * dim + i] = sums[i];
  }
}

template <typename scalar_t>
inline void contract_backward(const Block& b, const scalar_t* x, const scalar_t* factor, const scalar_t* g,
                              scalar_t* grad_x, scalar_t* grad_factor) {
  switch (b.dim) {
    case 1: return contract_backward_block<1>(b, x, factor, g, grad_x, grad_factor);
    case 3: return contract_backward_block<3>(b, x, factor, g, grad_x, grad_factor);
    case 5: return contract_backward_block<5>(b, x, factor, g, grad_x, grad_factor);
    case 7: return contract_backward_block<7>(b, x, factor, g, grad_x, grad_factor);
    default: return contract_backward_block<0>(b, x, factor, g, grad_x, grad_factor);
  }
}

template <typename scalar_t>
void forward_kernel(const scalar_t* x, const scalar_t* factor, const scalar_t* weight, scalar_t* out,
                    int64_t edges, int64_t x_dim, int64_t factor_dim, int64_t weight_dim, int64_t out_dim,
                    const Tables& tables) {
  at::parallel_for(0, edges, 64, [&](int64_t first, int64_t last) {
    std::vector<scalar_t> t_buffer(tables.max_block);
    for (int64_t e = first; e < last; ++e) {
      const scalar_t* xe = x + e * x_dim;
      const scalar_t* fe = factor + e * factor_dim;
      const scalar_t* we = weight + e * weight_dim;
      scalar_t* oe = out + e * out_dim;
      for (const Block& b : tables.blocks) {
        scalar_t* t = t_buffer.data();
        contract(b, xe + b.in_offset, fe + b.factor_offset, t);
        const scalar_t* wb = we + b.weight_offset;
        for (int64_t p = 0; p < b.n_paths; ++p) {
          const int64_t* path = tables.paths + (b.first_path + p) * kPathFields;
          const int64_t column = path[0], d = path[1];
          scalar_t* op = oe + path[2];
          for (int64_t u = 0; u < b.mul; ++u) {
            const scalar_t w = wb[p * b.mul + u];
            const scalar_t* tu = t + u * b.width + column;
            for (int64_t k = 0; k < d; ++k) op[u * d + k] = w * tu[k];
          }
        }
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(const scalar_t* grad_summed, const int64_t* centre, const scalar_t* x, const scalar_t* factor,
                     const scalar_t* weight, scalar_t* grad_x, scalar_t* grad_factor, scalar_t* grad_weight,
                     int64_t edges, int64_t x_dim, int64_t factor_dim, int64_t weight_dim, int64_t out_dim,
                     const Tables& tables) {
  at::parallel_for(0, edges, 64, [&](int64_t first, int64_t last) {
    std::vector<scalar_t> t_buffer(tables.max_block), g_buffer(tables.max_block);
    for (int64_t e = first; e < last; ++e) {
      const scalar_t* ge = grad_summed + centre[e] * out_dim;
      const scalar_t* xe = x + e * x_dim;
      const scalar_t* fe = factor + e * factor_dim;
      const scalar_t* we = weight + e * weight_dim;
      for (const Block& b : tables.blocks) {
        scalar_t* t = t_buffer.data();
        scalar_t* g = g_buffer.data();  // d loss / d t
        const scalar_t* xb = xe + b.in_offset;
        const scalar_t* fb = fe + b.factor_offset;
        contract(b, xb, fb, t);
        const scalar_t* wb = we + b.weight_offset;
        scalar_t* gwb = grad_weight + e * weight_dim + b.weight_offset;
        for (int64_t p = 0; p < b.n_paths; ++p) {
          const int64_t* path = tables.paths + (b.first_path + p) * kPathFields;
          const int64_t column = path[0], d = path[1];
          const scalar_t* gp = ge + path[2];
          for (int64_t u = 0; u < b.mul; ++u) {
            const scalar_t w = wb[p * b.mul + u];
            const scalar_t* tu = t + u * b.width + column;
            scalar_t* gu = g + u * b.width + column;
            scalar_t sum = 0;
            for (int64_t k = 0; k < d; ++k) {
              sum += gp[u * d + k] * tu[k];
              gu[k] = gp[u * d + k] * w;
            }
            gwb[p * b.mul + u] = sum;
          }
        }
        scalar_t* gfb = nullptr;
        if (grad_factor != nullptr) {
          gfb = grad_factor + e * factor_dim + b.factor_offset;
          std::fill(gfb, gfb + b.dim * b.width, scalar_t(0));
        }
        contract_backward(b, xb, fb, g, grad_x + e * x_dim + b.in_offset, gfb);
      }
    }
  });
}

at::Tensor forward(const at::Tensor& x_in, const at::Tensor& factor_in, const at::Tensor& weight_in,
                   const at::Tensor& block_table, const at::Tensor& path_table, int64_t out_dim) {
  check_inputs(x_in, factor_in, weight_in);
  auto x = x_in.contiguous(), factor = factor_in.contiguous(), weight = weight_in.contiguous();
  const Tables tables = read_tables(block_table, path_table);
  auto out = at::empty({x.size(0), out_dim}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "edge_tensor_product_forward", [&] {
    forward_kernel<scalar_t>(x.data_ptr<scalar_t>(), factor.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(),
                             out.data_ptr<scalar_t>(), x.size(0), x.size(1), factor.size(1), weight.size(1), out_dim,
                             tables);
  });
  return out;
}

std::vector<at::Tensor> backward(const at::Tensor& grad_summed_in, const at::Tensor& centre_in,
                                 const at::Tensor& x_in, const at::Tensor& factor_in, const at::Tensor& weight_in,
                                 const at::Tensor& block_table, const at::Tensor& path_table, bool factor_grad) {
  check_inputs(x_in, factor_in, weight_in);
  TORCH_CHECK(centre_in.dim() == 1 && centre_in.size(0) == x_in.size(0), "centre must hold one index per edge");
  auto grad_summed = grad_summed_in.to(x_in.scalar_type()).contiguous();
  auto centre = centre_in.to(at::kLong).contiguous();
  auto x = x_in.contiguous(), factor = factor_in.contiguous(), weight = weight_in.contiguous();
  const Tables tables = read_tables(block_table, path_table);
  auto grad_x = at::empty_like(x), grad_weight = at::empty_like(weight);
  auto grad_factor = factor_grad ? at::empty_like(factor) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "edge_tensor_product_backward", [&] {
    backward_kernel<scalar_t>(grad_summed.data_ptr<scalar_t>(), centre.data_ptr<int64_t>(), x.data_ptr<scalar_t>(),
                              factor.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(),
                              factor_grad ? grad_factor.data_ptr<scalar_t>() : nullptr, grad_weight.data_ptr<scalar_t>(), x.size(0),
                              x.size(1), factor.size(1), weight.size(1), grad_summed.size(1), tables);
  });
  return {grad_x, grad_factor, grad_weight};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "EdgeTensorProduct forward (CPU)");
  m.def("backward", &backward, "EdgeTensorProduct backward (CPU)");
}
