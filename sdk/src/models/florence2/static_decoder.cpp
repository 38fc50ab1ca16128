#include "models/florence2/static_decoder.h"

#include <limits>

#include "core/error.h"

#if LOUPE_WITH_CUDA && LOUPE_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace loupe::florence2 {

#if LOUPE_WITH_CUDA && LOUPE_CUDA_GRAPHS
struct StaticDecoder::Graph {
  at::cuda::CUDAGraph graph;
};
#else
struct StaticDecoder::Graph {};
#endif

StaticDecoder::StaticDecoder(Florence2Impl& model, const torch::Tensor& enc, int64_t max_len, bool use_graph)
    : m_(model), B_(enc.size(0)), max_len_(max_len) {
  auto& dec = *m_.model->language_model->decoder;
  const int64_t positions = dec.embed_positions->weight.size(0) - 2;
  if (max_len_ > positions)
    LOUPE_THROW(InvalidArgument, "Florence-2: " << max_len_ << " decoder positions asked, the model has " << positions);
  const auto dev = enc.device();
  const auto dt = m_.model->language_model->shared->weight.scalar_type();
  ids_ = torch::zeros({B_, 1}, torch::dtype(torch::kLong).device(dev));
  pos_ = torch::zeros({1}, torch::dtype(torch::kLong).device(dev));
  mask_ = torch::full({1, 1, 1, max_len_}, -std::numeric_limits<float>::infinity(), torch::dtype(dt).device(dev));
  logits_ = torch::zeros({B_, m_.cfg.text.vocab_size}, torch::dtype(dt).device(dev));
  const int heads = m_.cfg.text.decoder_attention_heads, hd = m_.cfg.text.d_model / heads;
  for (size_t i = 0; i < dec.layers->size(); ++i)
    self_.push_back({torch::zeros({B_, heads, max_len_, hd}, torch::dtype(dt).device(dev)),
                     torch::zeros({B_, heads, max_len_, hd}, torch::dtype(dt).device(dev)), pos_});
  enc_ = enc;  // cross-attention K/V: computed by the first step, kept in cross_
#if LOUPE_WITH_CUDA && LOUPE_CUDA_GRAPHS
  if (use_graph && dev.is_cuda()) {
    // Warm up on a side stream (lazy library handles and workspaces must exist before capture),
    // put the state back, then capture one step; capturing records kernels without running them.
    auto stream = c10::cuda::getStreamFromPool(false, dev.index());
    {
      c10::cuda::CUDAStreamGuard guard(stream);
      run();
      pos_.zero_();
      mask_.fill_(-std::numeric_limits<float>::infinity());
      for (auto& c : self_) {
        c.k.zero_();
        c.v.zero_();
      }
      stream.synchronize();
      graph_ = std::make_unique<Graph>();
      graph_->graph.capture_begin();
      run();
      graph_->graph.capture_end();
    }
    stream.synchronize();
  }
#else
  (void)use_graph;
#endif
}

StaticDecoder::~StaticDecoder() = default;

bool StaticDecoder::graphed() const { return graph_ != nullptr; }

void StaticDecoder::run() {
  auto& dec = *m_.model->language_model->decoder;
  mask_.index_fill_(3, pos_, 0.0);  // open this step's slot
  auto h = m_.embed(ids_) + dec.embed_positions->weight.index_select(0, pos_ + 2).unsqueeze(0);
  logits_.copy_(m_.decode_embedded(h, enc_, self_, cross_, mask_).select(1, 0));
  pos_.add_(1);
}

torch::Tensor StaticDecoder::step(const torch::Tensor& ids) {
  if (pos_host_ >= max_len_)
    LOUPE_THROW(InvalidArgument, "Florence-2: generation reached the prepared length " << max_len_);
  ids_.copy_(ids.view({B_, 1}));
#if LOUPE_WITH_CUDA && LOUPE_CUDA_GRAPHS
  if (graph_) graph_->graph.replay();
  else run();
#else
  run();
#endif
  ++pos_host_;
  return logits_;
}

void StaticDecoder::reorder(const torch::Tensor& index) {
  for (auto& c : self_) {
    c.k.copy_(c.k.index_select(0, index));
    c.v.copy_(c.v.index_select(0, index));
  }
}

}  // namespace loupe::florence2
