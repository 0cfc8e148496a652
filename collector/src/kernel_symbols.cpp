// SPDX-License-Identifier: Apache-2.0
#include "memhp/collector/kernel_symbols.hpp"

#include <charconv>
#include <iterator>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace memhp::collector {
namespace {

// The lists are 40k-100k lines and memhp reads them at start-up (where
// TCG guests make every cycle count): one read, string_views, hash lookups.
std::string slurp(std::istream& in) { return std::string(std::istreambuf_iterator<char>(in), {}); }

// Splits `line` at blanks into up to `n` fields; returns how many.
std::size_t fields(std::string_view line, std::string_view* out, std::size_t n) {
    std::size_t k = 0, i = 0;
    while (k < n) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
        if (i >= line.size()) break;
        std::size_t j = i;
        while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
        out[k++] = line.substr(i, j - i);
        i = j;
    }
    return k;
}

template <typename Fn>
void for_each_line(std::string_view all, Fn&& fn) {
    while (!all.empty()) {
        const auto nl = all.find('\n');
        fn(all.substr(0, nl));
        if (nl == std::string_view::npos) break;
        all.remove_prefix(nl + 1);
    }
}

// wanted, as views into the caller's set (which outlives the parse).
std::unordered_map<std::string_view, const std::string*> index(const std::set<std::string>& wanted) {
    std::unordered_map<std::string_view, const std::string*> m;
    for (const auto& w : wanted) m.emplace(w, &w);
    return m;
}

}  // namespace

KallsymsInfo parse_kallsyms(std::string_view text, const std::set<std::string>& wanted) {
    KallsymsInfo out;
    const auto want = index(wanted);
    // Most lines are someone else's symbol: rule them out by the name's
    // length before hashing it, and parse an address only when it matters.
    std::uint64_t lengths[4] = {};
    for (const auto& w : wanted)
        if (w.size() < 256) lengths[w.size() / 64] |= std::uint64_t{1} << (w.size() % 64);
    const auto maybe_wanted = [&](std::size_t n) { return n < 256 && (lengths[n / 64] >> (n % 64) & 1); };
    std::vector<std::pair<const std::string*, std::uint64_t>> open;  // found, waiting for the next address
    const auto address_of = [](std::string_view a, std::uint64_t& addr) {
        auto [ptr, ec] = std::from_chars(a.data(), a.data() + a.size(), addr, 16);
        return ec == std::errc() && ptr == a.data() + a.size() && !a.empty();
    };
    for_each_line(text, [&](std::string_view line) {
        // "address type name[\t[module]]"
        const auto sp1 = line.find(' ');
        if (sp1 == std::string_view::npos || sp1 + 3 >= line.size() || line[sp1 + 2] != ' ') return;
        std::string_view name = line.substr(sp1 + 3);
        if (const auto tab = name.find('\t'); tab != std::string_view::npos) name = name.substr(0, tab);
        const bool candidate = maybe_wanted(name.size());
        if (open.empty() && !candidate) return;
        std::uint64_t addr = 0;
        if (!address_of(line.substr(0, sp1), addr)) return;
        // kallsyms is sorted by address within vmlinux: the first higher
        // address ends every symbol still open.
        if (!open.empty()) {
            std::erase_if(open, [&](const auto& o) {
                if (addr <= o.second) return false;
                out.end[*o.first] = addr;
                return true;
            });
        }
        if (!candidate) return;
        auto it = want.find(name);
        if (it == want.end() || out.address.contains(*it->second)) return;
        out.address[*it->second] = addr;
        const char type = line[sp1 + 1];
        if (type == 't' || type == 'T') out.text.insert(*it->second);
        open.emplace_back(it->second, addr);
    });
    return out;
}

KallsymsInfo parse_kallsyms(std::istream& in, const std::set<std::string>& wanted) {
    return parse_kallsyms(slurp(in), wanted);
}

std::set<std::string> parse_function_list(std::string_view text, const std::set<std::string>& wanted) {
    std::set<std::string> out;
    const auto want = index(wanted);
    for_each_line(text, [&](std::string_view line) {
        std::string_view f[2];
        const std::size_t n = fields(line, f, 2);
        if (n == 0) return;
        // "ffffffff81234560 name" (the _addrs variant) vs "name [module]".
        const bool address_first = n == 2 && f[0].size() >= 8 &&
                                   f[0].find_first_not_of("0123456789abcdef") == std::string_view::npos &&
                                   f[1].front() != '[';
        auto it = want.find(address_first ? f[1] : f[0]);
        if (it != want.end()) out.insert(*it->second);
    });
    return out;
}

std::set<std::string> parse_function_list(std::istream& in, const std::set<std::string>& wanted) {
    return parse_function_list(slurp(in), wanted);
}

std::set<std::string> parse_kprobe_blacklist(std::istream& in, const std::set<std::string>& wanted) {
    return parse_kprobe_blacklist(slurp(in), wanted);
}

std::set<std::string> parse_kprobe_blacklist(std::string_view text, const std::set<std::string>& wanted) {
    std::set<std::string> out;
    const auto want = index(wanted);
    for_each_line(text, [&](std::string_view line) {
        std::string_view f[2];
        if (fields(line, f, 2) < 2) return;
        auto it = want.find(f[1]);
        if (it != want.end()) out.insert(*it->second);
    });
    return out;
}

}  // namespace memhp::collector
