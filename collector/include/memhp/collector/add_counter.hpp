// SPDX-License-Identifier: Apache-2.0
#pragma once
// The smoke probe: counts __add_pages() calls (fentry, or kprobe where fentry
// cannot attach). Owns its skeleton; move-only.
#include <cstdint>
#include <memory>
#include <string>

struct add_count;  // the generated skeleton

namespace memhp::collector {

class AddCounter {
public:
    enum class Mode { Fentry, Kprobe };
    struct Totals {
        std::uint64_t calls = 0;
        std::uint64_t nr_pages = 0;
    };
    // Opens, loads and attaches; throws BpfError with a remedy.
    AddCounter();
    ~AddCounter();
    AddCounter(AddCounter&&) noexcept;
    AddCounter& operator=(AddCounter&&) noexcept;
    AddCounter(const AddCounter&) = delete;
    AddCounter& operator=(const AddCounter&) = delete;

    [[nodiscard]] Mode mode() const { return mode_; }
    [[nodiscard]] Totals read() const;
    [[nodiscard]] static std::string mode_name(Mode m) { return m == Mode::Fentry ? "fentry" : "kprobe"; }

private:
    struct SkelDeleter {
        void operator()(add_count* s) const;
    };
    std::unique_ptr<add_count, SkelDeleter> skel_;
    Mode mode_ = Mode::Fentry;
};

}  // namespace memhp::collector
