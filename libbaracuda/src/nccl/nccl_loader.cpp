// NCCL loaded at run time with dlopen, in the order baracuda.h gives, resolving only the
// symbols of nccl_api.h.
#include <dlfcn.h>
#include <link.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "baracuda/baracuda.h"
#include "common/status.h"
#include "nccl/nccl_api.h"

namespace baracuda::nccl {
namespace {

constexpr const char* kLoadOp = "nccl_load";
constexpr const char* kVersionOp = "nccl_version";
constexpr const char* kLibraryName = "libnccl.so.2";
constexpr const char* kPathVariable = "BARACUDA_NCCL_LIBRARY";
// Where the nvidia-nccl-cu12 / -cu13 wheels put the library, relative to the folder that holds
// libbaracuda.so inside site-packages (site-packages/baracuda).
constexpr const char* kWheelRelativePath = "/../nvidia/nccl/lib/libnccl.so.2";

struct LoaderState {
  std::mutex mutex;
  void* handle = nullptr;
  Api api = {};
  std::string path;
};

LoaderState& state() {
  static LoaderState loader;
  return loader;
}

struct Candidate {
  std::string origin;  // "explicit path", "BARACUDA_NCCL_LIBRARY", ...
  std::string path;
  bool only_if_loaded;  // look for a copy already in the process, never open a new one
  bool sole;            // the only candidate: an explicit path or the variable
};

std::string this_library_folder() {
  Dl_info info = {};
  if (dladdr(reinterpret_cast<void*>(&baracuda_nccl_load), &info) == 0 ||
      info.dli_fname == nullptr) {
    return std::string();
  }
  std::string file = info.dli_fname;
  const size_t slash = file.rfind('/');
  return slash == std::string::npos ? std::string(".") : file.substr(0, slash);
}

// An explicit path, else a set BARACUDA_NCCL_LIBRARY, is the only candidate: what was asked
// for is loaded or refused, never replaced by another NCCL.
std::vector<Candidate> search_order(const char* explicit_path) {
  if (explicit_path != nullptr) return {{"explicit path", explicit_path, false, true}};
  if (const char* variable = std::getenv(kPathVariable); variable != nullptr && *variable != '\0') {
    return {{kPathVariable, variable, false, true}};
  }
  std::vector<Candidate> candidates;
  candidates.push_back({"already loaded", kLibraryName, true, false});
  const std::string folder = this_library_folder();
  if (!folder.empty()) {
    candidates.push_back({"nvidia-nccl wheel", folder + kWheelRelativePath, false, false});
  }
  candidates.push_back({"system", kLibraryName, false, false});
  return candidates;
}

// The text after "expected " in the refusal of these candidates.
const char* expectation(const std::vector<Candidate>& candidates) {
  if (candidates.size() == 1 && candidates.front().origin == kPathVariable) {
    return "BARACUDA_NCCL_LIBRARY to name libnccl.so.2, the only place tried while it is set";
  }
  return candidates.size() == 1 ? "that path to be libnccl.so.2"
                                : "libnccl.so.2 in one of these places";
}

// Resolves every entry point of Api; names the first one missing.
bool resolve(void* handle, Api* api, std::string* missing) {
  struct Entry {
    const char* name;
    void** slot;
  };
  const Entry entries[] = {
      {"ncclGetVersion", reinterpret_cast<void**>(&api->GetVersion)},
      {"ncclGetErrorString", reinterpret_cast<void**>(&api->GetErrorString)},
      {"ncclGetLastError", reinterpret_cast<void**>(&api->GetLastError)},
      {"ncclGetUniqueId", reinterpret_cast<void**>(&api->GetUniqueId)},
      {"ncclCommInitRank", reinterpret_cast<void**>(&api->CommInitRank)},
      {"ncclCommDestroy", reinterpret_cast<void**>(&api->CommDestroy)},
      {"ncclCommAbort", reinterpret_cast<void**>(&api->CommAbort)},
      {"ncclCommGetAsyncError", reinterpret_cast<void**>(&api->CommGetAsyncError)},
      {"ncclCommCount", reinterpret_cast<void**>(&api->CommCount)},
      {"ncclCommUserRank", reinterpret_cast<void**>(&api->CommUserRank)},
      {"ncclCommCuDevice", reinterpret_cast<void**>(&api->CommCuDevice)},
      {"ncclSend", reinterpret_cast<void**>(&api->Send)},
      {"ncclRecv", reinterpret_cast<void**>(&api->Recv)},
      {"ncclGroupStart", reinterpret_cast<void**>(&api->GroupStart)},
      {"ncclGroupEnd", reinterpret_cast<void**>(&api->GroupEnd)},
  };
  for (const Entry& entry : entries) {
    *entry.slot = dlsym(handle, entry.name);
    if (*entry.slot == nullptr) {
      *missing = entry.name;
      return false;
    }
  }
  return true;
}

std::string resolved_path(void* handle, const std::string& fallback) {
  link_map* map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr && map->l_name != nullptr &&
      *map->l_name != '\0') {
    return map->l_name;
  }
  return fallback;
}

// Whether `path` names the library of `handle`: dlopen with RTLD_NOLOAD finds a loaded object
// by its name and by its file (device and inode), so a link or another spelling of the same
// file counts, a copy does not. Opens nothing new.
bool names_library(const std::string& path, void* handle) {
  void* found = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  if (found == nullptr) return false;
  dlclose(found);
  return found == handle;
}

// Why a sole candidate must not be opened: a libnccl.so.2 from another file is in the process
// already (a framework's), and a second NCCL copy beside it would not share its state. Empty
// when there is none, or when the candidate names that same file.
std::string second_copy_reason(const Candidate& candidate) {
  void* present = dlopen(kLibraryName, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  if (present == nullptr) return std::string();
  const bool same = names_library(candidate.path, present);
  const std::string present_path = resolved_path(present, kLibraryName);
  dlclose(present);
  if (same) return std::string();
  return "another libnccl.so.2 is loaded in this process already, from '" + present_path +
         "', and a second NCCL copy beside it is not opened (name that file, or load NCCL "
         "before the other library does)";
}

// Tries one candidate; on failure appends why to `tried`.
bool try_load(const Candidate& candidate, LoaderState& loader, std::string* tried) {
  const std::string place = "; " + candidate.origin + " '" + candidate.path + "': ";
  if (candidate.sole) {
    const std::string reason = second_copy_reason(candidate);
    if (!reason.empty()) {
      *tried += place + reason;
      return false;
    }
  }
  dlerror();
  const int flags = RTLD_NOW | RTLD_LOCAL | (candidate.only_if_loaded ? RTLD_NOLOAD : 0);
  void* handle = dlopen(candidate.path.c_str(), flags);
  if (handle == nullptr) {
    const char* reason = dlerror();
    *tried += place + (candidate.only_if_loaded ? std::string("not loaded in this process")
                                                : std::string(reason ? reason : "dlopen failed"));
    return false;
  }
  Api api = {};
  std::string missing;
  if (!resolve(handle, &api, &missing)) {
    *tried += place + "no symbol " + missing + " (not an NCCL 2.13+ library)";
    dlclose(handle);
    return false;
  }
  loader.handle = handle;
  loader.api = api;
  loader.path = resolved_path(handle, candidate.path);
  return true;
}

// Loads NCCL into `loader` (whose mutex the caller holds). Once one is loaded, path NULL and a
// path naming that library succeed; any other path is refused, never opened beside it.
baracuda_status load_locked(LoaderState& loader, const char* path, const char* op) {
  if (path != nullptr && *path == '\0') {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "path is empty (got \"\", expected the path of libnccl.so.2, or NULL for the "
                "search order)");
  }
  if (loader.handle != nullptr) {
    if (path == nullptr || names_library(path, loader.handle)) return BARACUDA_STATUS_SUCCESS;
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "another NCCL is loaded already (got path '%s', expected '%s', the library "
                "loaded first: a loaded NCCL stays loaded for the life of the process)",
                path, loader.path.c_str());
  }
  const std::vector<Candidate> candidates = search_order(path);
  std::string tried;
  for (const Candidate& candidate : candidates) {
    if (try_load(candidate, loader, &tried)) return BARACUDA_STATUS_SUCCESS;
  }
  return fail(BARACUDA_STATUS_LIBRARY_NOT_LOADED, op, "cannot load NCCL (got %s, expected %s)",
              tried.substr(2).c_str(), expectation(candidates));
}

}  // namespace

const Api* loaded_api(const char* op) {
  LoaderState& loader = state();
  std::lock_guard<std::mutex> lock(loader.mutex);
  if (loader.handle != nullptr) return &loader.api;
  fail(BARACUDA_STATUS_LIBRARY_NOT_LOADED, op,
       "NCCL not loaded (got no library, expected a successful baracuda_nccl_load)");
  return nullptr;
}

const Api* load_api(const char* op) {
  LoaderState& loader = state();
  std::lock_guard<std::mutex> lock(loader.mutex);
  return load_locked(loader, nullptr, op) == BARACUDA_STATUS_SUCCESS ? &loader.api : nullptr;
}

const char* result_name(ncclResult_t result) {
  switch (result) {
    case ncclSuccess: return "ncclSuccess";
    case ncclUnhandledCudaError: return "ncclUnhandledCudaError";
    case ncclSystemError: return "ncclSystemError";
    case ncclInternalError: return "ncclInternalError";
    case ncclInvalidArgument: return "ncclInvalidArgument";
    case ncclInvalidUsage: return "ncclInvalidUsage";
    case ncclRemoteError: return "ncclRemoteError";
    case ncclInProgress: return "ncclInProgress";
  }
  return "ncclResult";
}

baracuda_status check_nccl(const Api& api, ncclResult_t result, ncclComm_t comm, const char* op,
                           const char* call) {
  if (result == ncclSuccess) return BARACUDA_STATUS_SUCCESS;
  const char* last_error = api.GetLastError(comm);
  return fail(BARACUDA_STATUS_NCCL_ERROR, op,
              "%s failed (got %s = %d: %s; NCCL's last error: %s, expected ncclSuccess)", call,
              result_name(result), static_cast<int>(result), api.GetErrorString(result),
              last_error != nullptr && *last_error != '\0' ? last_error : "none recorded");
}

}  // namespace baracuda::nccl

extern "C" {

baracuda_status baracuda_nccl_load(const char* path) {
  using namespace baracuda::nccl;
  return baracuda::guard(kLoadOp, [&] {
    LoaderState& loader = state();
    std::lock_guard<std::mutex> lock(loader.mutex);
    const baracuda_status status = load_locked(loader, path, kLoadOp);
    return status == BARACUDA_STATUS_SUCCESS ? baracuda::succeed() : status;
  });
}

baracuda_status baracuda_nccl_version(int* version) {
  using namespace baracuda::nccl;
  return baracuda::guard(kVersionOp, [&] {
    if (version == nullptr) {
      return baracuda::fail(BARACUDA_STATUS_INVALID_PROBLEM, kVersionOp,
                            "version is NULL (got NULL, expected a pointer)");
    }
    *version = 0;
    const Api* api = loaded_api(kVersionOp);
    if (api == nullptr) return BARACUDA_STATUS_LIBRARY_NOT_LOADED;
    const baracuda_status status =
        check_nccl(*api, api->GetVersion(version), nullptr, kVersionOp, "ncclGetVersion");
    return status == BARACUDA_STATUS_SUCCESS ? baracuda::succeed() : status;
  });
}

const char* baracuda_nccl_library_path(void) {
  using namespace baracuda::nccl;
  try {
    LoaderState& loader = state();
    std::lock_guard<std::mutex> lock(loader.mutex);
    // Set once, with the library, and never changed after: the pointer stays valid.
    return loader.path.c_str();
  } catch (...) {
    return "";
  }
}

}  // extern "C"
