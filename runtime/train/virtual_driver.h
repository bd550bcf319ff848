// The window drivers' factories (driver.h has the interface).
#pragma once

#include <memory>

#include "runtime/train/driver.h"
#include "runtime/train/exchange.h"
#include "runtime/train/setup.h"

namespace nbsgd::engine {

std::unique_ptr<WindowDriver> make_virtual_driver(Setup& s, Exchange& x);
std::unique_ptr<WindowDriver> make_real_driver(Setup& s, Exchange& x);

}  // namespace nbsgd::engine
