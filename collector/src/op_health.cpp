// SPDX-License-Identifier: Apache-2.0
#include "memhp/collector/op_health.hpp"

#include <bpf/bpf.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace memhp::collector {

OpAge classify_op(std::uint64_t now_ns, std::uint64_t t0_ns, std::uint64_t max_age_ns, bool task_alive) {
    if (!task_alive) return OpAge::TaskGone;
    if (max_age_ns && now_ns > t0_ns && now_ns - t0_ns > max_age_ns) return OpAge::TooOld;
    return OpAge::Live;
}

bool task_exists(std::uint32_t tid) {
    struct stat st {};
    const std::string path = "/proc/" + std::to_string(tid);
    return ::stat(path.c_str(), &st) == 0 || errno != ENOENT;
}

std::uint64_t monotonic_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

SweepCounts sweep_ops_map(int ops_fd, int outer_fd, volatile std::uint32_t* inflight, std::uint64_t max_age_ns,
                          const std::function<bool(std::uint32_t)>& task_alive) {
    SweepCounts out;
    if (ops_fd < 0) return out;
    bpf_map_info info{};
    std::uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(ops_fd, &info, &len) || info.key_size != sizeof(std::uint32_t) ||
        info.value_size < 2 * sizeof(std::uint64_t))
        return out;
    // Keys first, then decisions: deleting while walking would restart the walk.
    std::vector<std::uint32_t> keys;
    std::uint32_t key = 0;
    const void* prev = nullptr;
    while (keys.size() < info.max_entries && bpf_map_get_next_key(ops_fd, prev, &key) == 0) {
        keys.push_back(key);
        prev = &keys.back();
    }
    const std::uint64_t now = monotonic_ns();
    std::vector<std::uint8_t> value(info.value_size);
    for (std::uint32_t tid : keys) {
        if (bpf_map_lookup_elem(ops_fd, &tid, value.data())) continue;  // ended meanwhile
        std::uint64_t t0 = 0;
        std::memcpy(&t0, value.data() + sizeof(std::uint64_t), sizeof t0);
        const OpAge age = classify_op(now, t0, max_age_ns, task_alive(tid));
        if (age == OpAge::Live) continue;
        if (outer_fd >= 0) (void)bpf_map_delete_elem(outer_fd, &tid);
        if (bpf_map_delete_elem(ops_fd, &tid)) continue;  // BPF ended it first
        if (inflight) __atomic_fetch_sub(inflight, 1u, __ATOMIC_RELAXED);
        ++(age == OpAge::TaskGone ? out.task_gone : out.too_old);
    }
    return out;
}

}  // namespace memhp::collector
