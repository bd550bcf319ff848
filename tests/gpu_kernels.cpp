#include "bodies/gather_body.h"
#include "bodies/kernels_body.h"

namespace nbsgd::test {
NBSGD_BACKEND_SUITE(KernelsTest, Backend::Cuda);
NBSGD_BACKEND_SUITE(GatherTest, Backend::Cuda);
}
