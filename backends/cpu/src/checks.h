// Argument checks shared by the float operations (dispatch.cpp) and the quantized path
// (quantized.cpp): what Python cannot check (contiguity, storage, sizes against the data
// pointer, overlap). Every failure throws std::invalid_argument (ValueError in Python) naming
// the argument; the operations run every check before they write anything.
#pragma once

#include <cstdint>
#include <string>

#include "bn.h"
#include "ops.h"

namespace bn {

[[noreturn]] void fail(const std::string& msg);

// "(2,3,4)": the shape of an argument, for messages.
std::string shape_str(const ArrayRef& a);

std::int64_t numel(const ArrayRef& a);

// a is C-contiguous (strides of size-1 dimensions are ignored) and has data if not empty.
void check_contiguous(const ArrayRef& a);

// a's storage is of kind ('f', 'u', 'i') and bits; `what` names the expected dtype.
void check_storage(const ArrayRef& a, char kind, int bits, const char* what);

// a per-channel parameter: shape (C,), float64 (f64) or float32 storage, C-contiguous.
void check_param(const ArrayRef& a, std::int64_t C, bool f64);

// x viewed as [outer, C, inner] around axis; x.ndim >= 2 and 0 <= axis < x.ndim are checked.
Geometry geometry_of(const ArrayRef& x, int axis);

// Whether the bytes of a and b share an address.
bool overlaps(const ArrayRef& a, const ArrayRef& b);

}  // namespace bn
