// SPDX-License-Identifier: Apache-2.0
#include "memhp/collector/add_counter.hpp"

#include <cerrno>
#include <cstring>

#include <linux/types.h>

// clang-format off
#include "add_count.h"  // the skeleton refers to its struct
#include "add_count.skel.h"
// clang-format on
#include "memhp/collector/bpf_support.hpp"

namespace memhp::collector {

void AddCounter::SkelDeleter::operator()(add_count* s) const { add_count__destroy(s); }

namespace {
// open -> choose program -> load -> attach; nullptr + errno text on failure.
add_count* try_open(AddCounter::Mode mode, std::string& error) {
    add_count* skel = add_count__open();
    if (!skel) {
        error = std::string("open: ") + std::strerror(errno);
        return nullptr;
    }
    const bool fentry = mode == AddCounter::Mode::Fentry;
    bpf_program__set_autoload(skel->progs.add_pages_fentry, fentry);
    bpf_program__set_autoload(skel->progs.add_pages_kprobe, !fentry);
    int err = add_count__load(skel);
    if (!err) err = add_count__attach(skel);
    if (err) {
        error = std::string(fentry ? "fentry" : "kprobe") + ": " + std::strerror(-err);
        add_count__destroy(skel);
        return nullptr;
    }
    return skel;
}
}  // namespace

AddCounter::AddCounter() {
    check_bpf_prerequisites();
    std::string fentry_err, kprobe_err;
    if (auto* s = try_open(Mode::Fentry, fentry_err)) {
        skel_.reset(s);
        mode_ = Mode::Fentry;
        return;
    }
    if (auto* s = try_open(Mode::Kprobe, kprobe_err)) {
        skel_.reset(s);
        mode_ = Mode::Kprobe;
        return;
    }
    throw BpfError("cannot attach to __add_pages (" + fentry_err + "; " + kprobe_err +
                   "). Is the kernel built with CONFIG_MEMORY_HOTPLUG and ftrace or kprobes?\nlibbpf said:\n" +
                   libbpf_log_tail());
}

AddCounter::~AddCounter() = default;
AddCounter::AddCounter(AddCounter&&) noexcept = default;
AddCounter& AddCounter::operator=(AddCounter&&) noexcept = default;

AddCounter::Totals AddCounter::read() const {
    const auto& t = skel_->bss->totals;
    return {__atomic_load_n(&t.calls, __ATOMIC_RELAXED), __atomic_load_n(&t.nr_pages, __ATOMIC_RELAXED)};
}

}  // namespace memhp::collector
