#include "bodies/layers_body.h"

namespace nbsgd::test {
NBSGD_BACKEND_SUITE(LayersTest, Backend::Host);
}
