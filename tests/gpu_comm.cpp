#include "bodies/comm_body.h"

namespace nbsgd::test {
NBSGD_BACKEND_SUITE(CommTest, Backend::Cuda);
}
