#include "bodies/runtime_body.h"

namespace nbsgd::test {
NBSGD_BACKEND_SUITE(RuntimeTest, Backend::Cuda);
}
