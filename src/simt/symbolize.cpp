// Kernel names for reports: the symbol of the __global__ function's address, demangled.
//
// dladdr only sees exported symbols; kernels in an executable usually are not, so fall back to
// the executable's own .symtab (our builds are not stripped). Only reports and benchmarks ask,
// so the cost does not matter; results are cached per launch.
#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

#include "simt/scheduler.h"

namespace ouro::simt {

namespace {

std::string demangle(const char* sym) {
  int status = 0;
  char* d = abi::__cxa_demangle(sym, nullptr, nullptr, &status);
  std::string out(status == 0 && d ? d : sym);
  std::free(d);
  // "void k(float*, int)" -> "k(float*, int)": kernels return void.
  return out;
}

// Look `addr` up in the .symtab of /proc/self/exe (PIE-aware).
std::string from_symtab(const void* addr) {
  std::uintptr_t bias = 0;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        *static_cast<std::uintptr_t*>(data) = info->dlpi_addr;  // first entry: the executable
        return 1;
      },
      &bias);
  int fd = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  struct stat st{};
  std::string result;
  if (::fstat(fd, &st) == 0 && st.st_size > static_cast<off_t>(sizeof(Elf64_Ehdr))) {
    void* map = ::mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map != MAP_FAILED) {
      const auto* base = static_cast<const unsigned char*>(map);
      const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
      const auto target = reinterpret_cast<std::uintptr_t>(addr) - bias;
      if (std::memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 && eh->e_shoff &&
          eh->e_shoff + eh->e_shnum * sizeof(Elf64_Shdr) <= static_cast<std::size_t>(st.st_size)) {
        const auto* sh = reinterpret_cast<const Elf64_Shdr*>(base + eh->e_shoff);
        for (int i = 0; i < eh->e_shnum && result.empty(); ++i) {
          if (sh[i].sh_type != SHT_SYMTAB) continue;
          const auto* syms = reinterpret_cast<const Elf64_Sym*>(base + sh[i].sh_offset);
          const auto* strs = reinterpret_cast<const char*>(base + sh[sh[i].sh_link].sh_offset);
          const std::size_t n = sh[i].sh_size / sizeof(Elf64_Sym);
          for (std::size_t k = 0; k < n; ++k) {
            if (ELF64_ST_TYPE(syms[k].st_info) == STT_FUNC && syms[k].st_value == target) {
              result = demangle(strs + syms[k].st_name);
              break;
            }
          }
        }
      }
      ::munmap(map, st.st_size);
    }
  }
  ::close(fd);
  return result;
}

}  // namespace

std::string symbol_name(const void* addr) {
  static std::mutex mu;
  static std::unordered_map<const void*, std::string> cache;
  std::lock_guard lock(mu);
  auto it = cache.find(addr);
  if (it != cache.end()) return it->second;
  Dl_info info{};
  std::string name = dladdr(addr, &info) && info.dli_sname && info.dli_saddr == addr ? demangle(info.dli_sname)
                                                                                    : from_symtab(addr);
  if (name.empty()) name.push_back('?');
  cache.emplace(addr, name);
  return name;
}

const char* kernel_name(const Launch* launch) {
  if (!launch) return "?";
  if (!launch->name) {
    static std::mutex mu;
    static std::unordered_map<const void*, std::string> names;  // stable storage for c_str()
    std::lock_guard lock(mu);
    auto [it, _] = names.try_emplace(launch->params.kernel, symbol_name(launch->params.kernel));
    launch->name = it->second.c_str();
  }
  return launch->name;
}

}  // namespace ouro::simt
