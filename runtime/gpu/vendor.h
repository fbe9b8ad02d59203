/* vendor.h — the only file that knows HIP exists. The kernels and the backend are written in
 * CUDA dialect; compiled by hipcc (-DRIG_HIP) the few runtime names they use map to HIP here.
 * Also the C headers of librig, which need one C++ shim (see below). */
#pragma once

#if defined(RIG_HIP) || defined(__HIP_PLATFORM_AMD__)

#include <hip/hip_fp16.h>
#include <hip/hip_runtime.h>

#define GPU_VENDOR_NAME "hip"

#define cudaDeviceProp hipDeviceProp_t
#define cudaError_t hipError_t
#define cudaErrorMemoryAllocation hipErrorMemoryAllocation
#define cudaEvent_t hipEvent_t
#define cudaGraph_t hipGraph_t
#define cudaGraphExec_t hipGraphExec_t
#define cudaStream_t hipStream_t
#define cudaSuccess hipSuccess

#define cudaEventCreate hipEventCreate
#define cudaEventDestroy hipEventDestroy
#define cudaEventElapsedTime hipEventElapsedTime
#define cudaEventRecord hipEventRecord
#define cudaEventSynchronize hipEventSynchronize
#define cudaFree hipFree
#define cudaGraphDestroy hipGraphDestroy
#define cudaGraphExecDestroy hipGraphExecDestroy
#define cudaGraphInstantiateWithFlags hipGraphInstantiateWithFlags
#define cudaGraphLaunch hipGraphLaunch
#define cudaGetDeviceCount hipGetDeviceCount
#define cudaGetDeviceProperties hipGetDeviceProperties
#define cudaGetErrorString hipGetErrorString
#define cudaGetLastError hipGetLastError
#define cudaMalloc hipMalloc
#define cudaMemcpy hipMemcpy
#define cudaMemcpyAsync hipMemcpyAsync
#define cudaMemcpyDeviceToDevice hipMemcpyDeviceToDevice
#define cudaMemcpyDeviceToHost hipMemcpyDeviceToHost
#define cudaMemcpyHostToDevice hipMemcpyHostToDevice
#define cudaMemset hipMemset
#define cudaMemsetAsync hipMemsetAsync
#define cudaSetDevice hipSetDevice
#define cudaStreamBeginCapture hipStreamBeginCapture
#define cudaStreamCaptureModeThreadLocal hipStreamCaptureModeThreadLocal
#define cudaStreamCreateWithFlags hipStreamCreateWithFlags
#define cudaStreamDestroy hipStreamDestroy
#define cudaStreamEndCapture hipStreamEndCapture
#define cudaStreamNonBlocking hipStreamNonBlocking
#define cudaStreamSynchronize hipStreamSynchronize

/* ROCm before 6.2 has no _sync shuffles; a wavefront always runs in lockstep, the mask is moot. */
#define __shfl_xor_sync(mask, var, lane_mask) __shfl_xor(var, lane_mask)

/* Wavefronts are 64 wide on gfx9 (MI50/MI100/MI200/MI300) and 32 on gfx10+ (HIP's default there).
 * Only the device passes know which; the host pass (one for all offload targets) must take the
 * width from the device's properties when it sizes launches (gpu_backend's warp_size). */
#if defined(__AMDGCN_WAVEFRONT_SIZE)
#define WARP_SIZE __AMDGCN_WAVEFRONT_SIZE
#else
#define WARP_SIZE 64
#endif

/* No warp-level mma.sync: the matrix-matrix kernels take their dp4a path (matmul_tiles.cu). */
#define GPU_HAS_MMA_SYNC 0

/* hipcc reads __launch_bounds__'s second number as waves per execution unit, another budget
 * than CUDA's blocks per multiprocessor: the kernels ask AMD for none. */
#define GPU_LAUNCH_BOUNDS(threads, min_blocks)

/* No programmatic dependent launch: kernels of a graph start when the one before has ended. */
#define GPU_HAS_PDL 0

/* Four signed 8-bit products summed into c: v_dot4_i32_i8 (gfx906, gfx908, gfx90a, gfx1030). */
static __device__ __forceinline__ int gpu_dp4a(int a, int b, int c)
{
        return __builtin_amdgcn_sdot4(a, b, c, false);
}

#else /* CUDA */

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define GPU_VENDOR_NAME "cuda"
#define WARP_SIZE 32

/* Warp-level mma.sync on 8-bit integers (PTX, sm_80 and later: the device's cc_major says). */
#define GPU_HAS_MMA_SYNC 1

/* A kernel of at most `threads` a block, of which a multiprocessor must hold `min_blocks` at once
 * (the compiler keeps its registers under what that leaves). */
#define GPU_LAUNCH_BOUNDS(threads, min_blocks) __launch_bounds__(threads, min_blocks)

/* Programmatic dependent launch (sm_90 and later): gpu_launch_kernel lets a kernel be launched
 * while the one before it still ends, and gpu_grid_begin makes it wait there. */
#define GPU_HAS_PDL 1

/* Four signed 8-bit products summed into c (sm_61 and later). */
static __device__ __forceinline__ int gpu_dp4a(int a, int b, int c)
{
        return __dp4a(a, b, c);
}

#endif

/* The first statement of every kernel. A kernel launched early (gpu_launch_kernel: while the one
 * before it still ends) waits here until that one has ended and its writes are visible, so no
 * kernel touches memory before its predecessor is done. Launched the usual way, or where the
 * device has no such launch, a no-op. No kernel lets the next one launch before its own blocks
 * have exited (griddepcontrol.launch_dependents): measured on an H200, the next kernel's blocks
 * placed on the multiprocessors while a one-wave matvec ran took the room of its own next
 * launch, and the matvec of 123 registers a thread ran 20-30% slower (docs/perf.md). */
static __device__ __forceinline__ void gpu_grid_begin(void)
{
#if GPU_HAS_PDL && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/* librig's headers are C17; C++ has static_assert where C has _Static_assert (nvcc's front end
 * does not accept the C spelling), and the functions have C linkage. */
#define _Static_assert static_assert
extern "C" {
#include "errmsg.h"
#include "kv.h"
#include "model.h"
#include "quant.h"
}
#undef _Static_assert
