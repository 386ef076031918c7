// The geometry of a windowed layer kernel (im2col / col2im, pooling), device-neutral: images
// (n, h, w, c) channels-last, output (n, oh, ow, ...), windows (kh, kw) with strides (sh, sw),
// dilations (dh, dw; 1 for pooling) and pad_top / pad_left positions of padding before the image.
#pragma once

#include <cstdint>

namespace fastdl {

struct Window {
  int64_t n, h, w, c;
  int64_t oh, ow;
  int64_t kh, kw, sh, sw, dh, dw;
  int64_t pad_top, pad_left;
};

}  // namespace fastdl
