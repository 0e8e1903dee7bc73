#pragma once
// ctrec::error: the one exception type the library throws for bad runtime input
// (sizes, names, ids). Messages name the tensor and what was expected.
#include <stdexcept>
#include <string>

namespace ctrec {

class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

} // namespace ctrec
