// Low-level pieces shared by the layers: owned float buffers, a thin cblas_sgemm
// wrapper, fixed-partition parallel loops and reproducible weight initialisation.
import COpenBLAS
import Dispatch
import Foundation

/// A float buffer owned by a layer and reused across steps; it only grows, so at
/// steady state (same batch size) no step allocates. Its pointer is stable until
/// the next `ensure` that needs more room.
public final class Buffer {
    public private(set) var ptr: UnsafeMutablePointer<Float>
    public private(set) var capacity: Int

    public init() {
        ptr = .allocate(capacity: 1)
        capacity = 1
    }

    /// A pointer to at least `count` floats (contents unspecified after growth).
    @discardableResult
    public func ensure(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            ptr.deallocate()
            ptr = .allocate(capacity: count)
            capacity = count
        }
        return ptr
    }

    /// `ensure(count)` and set the first `count` values to zero.
    @discardableResult
    public func zeroed(_ count: Int) -> UnsafeMutablePointer<Float> {
        let p = ensure(count)
        p.initialize(repeating: 0, count: count)
        return p
    }

    deinit { ptr.deallocate() }
}

extension Parameter {
    /// Base address of `value` in the store. Valid while the parameter stays in its store
    /// (a network packs its parameters once, when it is built); layers take it afresh at
    /// every forward/backward call.
    @inline(__always) var w: UnsafeMutablePointer<Float> { value.baseAddress! }
    /// Base address of `grad` (same validity rule as `w`).
    @inline(__always) var g: UnsafeMutablePointer<Float> { grad.baseAddress! }
}

/// OpenBLAS access. The thread count is a process-wide setting: layers that run
/// their own per-sample parallel loops call `setThreads(1)` first, big single
/// GEMMs may use `setThreads(BLAS.maxThreads)`. Never changed from inside a
/// parallel region.
public enum BLAS {
    nonisolated(unsafe) static var current = -1
    /// Threads used for big GEMMs and for our own parallel loops (2 on the dev machine).
    nonisolated(unsafe) public static var maxThreads: Int = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 2))

    public static func setThreads(_ n: Int) {
        if n != current {
            openblas_set_num_threads(Int32(n))
            current = n
        }
    }

    /// C[m,n] = alpha * op(A)[m,k] op(B)[k,n] + beta * C, row-major: OpenBLAS, or our own kernel
    /// (Gemm.swift) where `GemmKernel.choice` says so, on the threads of the last `setThreads`.
    @inline(__always)
    public static func gemm(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
                            _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
                            _ b: UnsafePointer<Float>, _ ldb: Int,
                            _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        if GemmKernel.choice == .own {
            ownGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

extension BLAS {
    /// Our kernel on `current` threads: big products are split into column (or row) ranges
    /// aligned to the register tile, one per thread; every element is summed in the same order.
    static func ownGemm(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
                        _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
                        _ b: UnsafePointer<Float>, _ ldb: Int,
                        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        let t = current < 1 ? maxThreads : current
        if t == 1 || m * n * k < 1 << 20 {
            OwnGemm.sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        let nt = (n + OwnGemm.nr - 1) / OwnGemm.nr, mt = (m + OwnGemm.mr - 1) / OwnGemm.mr
        let splitN = nt >= mt || nt >= 2 * t
        let tiles = splitN ? nt : mt, pieces = min(t, tiles)
        DispatchQueue.concurrentPerform(iterations: pieces) { q in
            let r = chunkRange(q, of: pieces, n: tiles)
            if splitN {
                let j0 = r.lowerBound * OwnGemm.nr, j1 = min(n, r.upperBound * OwnGemm.nr)
                let bj = transB ? b + j0 * ldb : b + j0
                OwnGemm.sgemm(transA, transB, m, j1 - j0, k, alpha, a, lda, bj, ldb, beta, c + j0, ldc)
            } else {
                let i0 = r.lowerBound * OwnGemm.mr, i1 = min(m, r.upperBound * OwnGemm.mr)
                let ai = transA ? a + i0 : a + i0 * lda
                OwnGemm.sgemm(transA, transB, i1 - i0, n, k, alpha, ai, lda, b, ldb, beta, c + i0 * ldc, ldc)
            }
        }
    }
}

/// Which single-precision GEMM runs, chosen once per process from OpenBLAS's run-time core and
/// this build's vector width (Package.swift's cpuFlags): ours where OpenBLAS's kernel is
/// narrower (an SSE core on an AVX-512 or AVX2 build, or a 256-bit core on an AVX-512 build),
/// OpenBLAS otherwise. DDPM_GEMM=openblas or DDPM_GEMM=own overrides it (for benchmarks).
public enum GemmKernel: String, Sendable {
    case openblas, own

    public static let choice: GemmKernel = {
        let auto = preferred(core: openBLASCore, buildBits: buildVectorBits)
        guard let v = ProcessInfo.processInfo.environment["DDPM_GEMM"], !v.isEmpty else { return auto }
        if let k = GemmKernel(rawValue: v) { return k }
        writeStderr("warning: DDPM_GEMM='\(v)' is neither 'openblas' nor 'own'; using \(auto.rawValue)\n")
        return auto
    }()

    /// OpenBLAS's kernel family at run time (openblas_get_corename, e.g. "Haswell", "SkylakeX", "Prescott").
    public static let openBLASCore: String = String(cString: openblas_get_corename())

    /// Vector width of this build's own kernels: 512 (AVX-512), 256 (AVX2 + FMA) or 128.
    public static var buildVectorBits: Int {
        #if AVX512
        return 512
        #elseif AVX2
        return 256
        #else
        return 128
        #endif
    }

    /// The rule: ours when OpenBLAS's sgemm vectors are narrower than ours.
    static func preferred(core: String, buildBits: Int) -> GemmKernel {
        let c = core.lowercased()
        let openBits: Int
        if ["skylakex", "cooperlake", "sapphirerapids"].contains(c) {
            openBits = 512
        } else if ["haswell", "zen", "excavator", "steamroller", "piledriver"].contains(c) {
            openBits = 256
        } else {
            openBits = 128
        }
        return buildBits > openBits ? .own : .openblas
    }
}

/// Runs body(i) for i in 0..<n, concurrently. Each index must write disjoint memory.
@inline(__always)
func parallelFor(_ n: Int, _ body: (Int) -> Void) {
    if n <= 1 || BLAS.maxThreads == 1 {
        for i in 0..<n { body(i) }
    } else {
        DispatchQueue.concurrentPerform(iterations: n, execute: body)
    }
}

/// Runs body(range) over a fixed split of 0..<count into contiguous pieces (for
/// elementwise passes over big tensors; each piece is independent).
@inline(__always)
func parallelRanges(_ count: Int, _ body: (Range<Int>) -> Void) {
    let pieces = count >= 1 << 16 ? 4 * BLAS.maxThreads : 1
    parallelFor(pieces) { k in body(chunkRange(k, of: pieces, n: count)) }
}

/// Fixed partition of 0..<n into `chunks` contiguous ranges (depends only on n):
/// reductions over the batch sum per-chunk partials in chunk order, so results
/// are bit-identical run to run whatever the thread scheduling.
@inline(__always)
func chunkRange(_ c: Int, of chunks: Int, n: Int) -> Range<Int> {
    (c * n / chunks)..<((c + 1) * n / chunks)
}

/// Number of reduction chunks for a batch of n (fixed, independent of the thread count).
@inline(__always)
func reductionChunks(_ n: Int) -> Int { min(n, 4) }

/// Creates named parameters with reproducible initial values: parameter number k
/// (in creation order) draws from RandomStream(seed, .init_, k).
///
/// Scheme (documented in docs/METHODS.md, section 5): weights and biases of Linear and
/// Conv layers uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) as PyTorch does;
/// GroupNorm scale 1, shift 0; embedding tables N(0, 1); the last conv of each
/// residual block and the output conv zero-initialised (Nichol & Dhariwal 2021).
public final class ParameterFactory {
    public let seed: UInt64
    public private(set) var all: [Parameter] = []

    public init(seed: UInt64) { self.seed = seed }

    private func nextStream() -> RandomStream {
        RandomStream(seed: seed, purpose: .init_, index: UInt64(all.count))
    }

    public func uniform(_ name: String, _ shape: [Int], bound: Float) -> Parameter {
        var r = nextStream()
        let n = shape.reduce(1, *)
        var v = [Float](repeating: 0, count: n)
        for i in 0..<n { v[i] = Float((2 * r.nextUniform() - 1) * Double(bound)) }
        let p = Parameter(name: name, shape: shape, value: v)
        all.append(p)
        return p
    }

    public func normal(_ name: String, _ shape: [Int], std: Float = 1) -> Parameter {
        var r = nextStream()
        let n = shape.reduce(1, *)
        var v = [Float](repeating: 0, count: n)
        for i in 0..<n { v[i] = r.nextNormal() * std }
        let p = Parameter(name: name, shape: shape, value: v)
        all.append(p)
        return p
    }

    public func constant(_ name: String, _ shape: [Int], _ c: Float) -> Parameter {
        let p = Parameter(name: name, shape: shape, value: [Float](repeating: c, count: shape.reduce(1, *)))
        all.append(p)
        return p
    }
}

/// SiLU(x) = x * sigmoid(x) and its derivative s (1 + x (1 - s)).
@inline(__always) func silu(_ x: Float) -> Float { x / (1 + expf(-x)) }
@inline(__always) func siluGrad(_ x: Float) -> Float {
    let s = 1 / (1 + expf(-x))
    return s * (1 + x * (1 - s))
}
