// What every run is built from, whatever its exchange and clock: the devices and
// the clock, the straggler profile, the data, one Worker per device, the shared
// epoch queue, the learning-rate schedule and the SGD settings. make_setup()
// validates every flag before anything is created.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nets/data/dataset.h"
#include "nets/data/epoch_queue.h"
#include "nets/optim/schedule.h"
#include "nets/optim/sgd.h"
#include "runtime/device/device.h"
#include "runtime/train/config.h"
#include "runtime/train/controller.h"
#include "runtime/train/ranks.h"
#include "runtime/train/straggler/profile.h"
#include "runtime/train/worker.h"

namespace nbsgd::engine {

struct Setup {
  TrainConfig cfg;  // as given, with the duration model resolved for the net
  DeviceList devices;
  bool virtual_clock = true;
  straggler::ResolvedProfile profile;
  ControllerConfig ctl;
  data::DataSplit data;
  std::vector<std::unique_ptr<Worker>> workers;
  // The training set on each device that holds one (--gather device): one per GPU,
  // shared by its partitions, and one for all host workers. Declared after `data`
  // and before nothing that outlives it.
  std::vector<std::unique_ptr<DeviceData>> device_data;
  std::string gather_note;  // why some worker gathers on the host despite --gather device; "" if none
  std::unique_ptr<data::EpochQueue> queue;
  optim::LrSchedule schedule;
  optim::SgdConfig sgd;
  size_t P = 0;
  double flops = 0;
  RankSpan span;  // the workers this rank computes (all of them in one process)
  int n() const { return static_cast<int>(workers.size()); }
};

// phase (optional): told as the data load and the model set-up begin and end.
std::unique_ptr<Setup> make_setup(const TrainConfig& cfg,
                                  const std::function<void(const std::string&, bool)>& phase = {});

}  // namespace nbsgd::engine
