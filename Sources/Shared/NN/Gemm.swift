// Our own single-precision GEMM, C = alpha op(A) op(B) + beta C (row-major), for machines
// where OpenBLAS's run-time kernel is narrower than this build's vectors: OpenBLAS 0.3.21
// does not know, e.g., Intel's Emerald Rapids (family 6, model 207) and falls back to its SSE3
// "Prescott" kernels at ~16 GFLOP/s per core, where this register tile runs at ~105 (AVX-512,
// docs/BENCHMARKS.md). `BLAS.gemm` chooses once per process (`GemmKernel.choice`).
//
// The loop structure of Goto & van de Geijn 2008 ("Anatomy of high-performance matrix
// multiplication") as in BLIS: for each KC-deep slice of K, op(B)'s slice is packed into NR-wide
// column panels (k-major), op(A)'s into MR-high row panels, and an MR x NR register tile
// accumulates a panel pair over the slice with one FMA per element and k:
//
//     for pc in K by KC:  pack B[pc, :] -> NR panels
//       for ic in M by MC:  pack A[ic, pc] -> MR panels
//         for jr, ir:  C[ir, jr] (=|+=) alpha * sum_k A[ir, k] B[k, jr]   (+ beta C on pc = 0)
//
// Every element of C is summed over k in the same order whatever M, N, the tile edges or the
// thread split, so results do not depend on the thread count. beta = 0 never reads C (which may
// hold garbage or NaN, as BLAS allows).

import Foundation

#if AVX512
typealias GemmV = SIMD16<Float>
#else
typealias GemmV = SIMD8<Float>
#endif

enum OwnGemm {
    /// Register tile: MR rows x NR = 2 vectors of columns (8 x 32 with AVX-512: 16 accumulators).
    static let mr = 8
    static let nr = 2 * GemmV.scalarCount
    /// K slice (A and B micro-panels of kc x 8 and kc x 32 floats stay in L1/L2) and row block.
    static let kc = 256
    static let mc = 128

    /// C[m,n] = alpha op(A)[m,k] op(B)[k,n] + beta C on one thread.
    static func sgemm(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
                      _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
                      _ b: UnsafePointer<Float>, _ ldb: Int,
                      _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        if m <= 0 || n <= 0 { return }
        if k <= 0 || alpha == 0 {
            scale(m, n, beta, c, ldc)
            return
        }
        let npad = (n + nr - 1) / nr * nr
        let kcMax = min(k, kc)
        let mcMax = min((m + mr - 1) / mr * mr, mc)
        let scratch = GemmScratch.current
        let packB = scratch.packB.ensure(kcMax * npad)
        let packA = scratch.packA.ensure(kcMax * mcMax)
        let tile = scratch.tile.ensure(mr * nr)
        var pc = 0
        while pc < k {
            let kb = min(kc, k - pc)
            packPanelsB(transB, b, ldb, pc, kb, n, packB)
            let first = pc == 0
            var ic = 0
            while ic < m {
                let mb = min(mc, m - ic)
                packPanelsA(transA, a, lda, ic, mb, pc, kb, packA)
                var jr = 0
                while jr < n {
                    let nb = min(nr, n - jr)
                    let bp = packB + jr * kb
                    var ir = 0
                    while ir < mb {
                        let rb = min(mr, mb - ir)
                        let ap = packA + ir * kb
                        let cp = c + (ic + ir) * ldc + jr
                        if rb == mr && nb == nr {
                            micro(kb, ap, bp, alpha, first ? beta : 1, cp, ldc)
                        } else {
                            // Edge tile: compute the full tile into `tile`, then update the valid part.
                            micro(kb, ap, bp, 1, 0, tile, nr)
                            let bt: Float = first ? beta : 1
                            for r in 0..<rb {
                                let crow = cp + r * ldc, trow = tile + r * nr
                                if bt == 0 {
                                    for j in 0..<nb { crow[j] = alpha * trow[j] }
                                } else {
                                    for j in 0..<nb { crow[j] = alpha * trow[j] + bt * crow[j] }
                                }
                            }
                        }
                        ir += mr
                    }
                    jr += nr
                }
                ic += mc
            }
            pc += kb
        }
    }

    /// C = beta C (beta = 0 writes zeros without reading C).
    static func scale(_ m: Int, _ n: Int, _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        for i in 0..<m {
            let row = c + i * ldc
            if beta == 0 { row.update(repeating: 0, count: n) } else if beta != 1 { for j in 0..<n { row[j] *= beta } }
        }
    }

    /// op(B)[pc..<pc+kb, 0..<n] into NR-wide panels: panel q holds, for each k, the NR values
    /// op(B)[pc+k, q NR ..< q NR + NR] (zeros past n).
    static func packPanelsB(_ trans: Bool, _ b: UnsafePointer<Float>, _ ldb: Int, _ pc: Int, _ kb: Int,
                            _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        var j0 = 0
        while j0 < n {
            let w = min(nr, n - j0)
            let panel = dst + j0 * kb
            if !trans {
                for p in 0..<kb {
                    let src = b + (pc + p) * ldb + j0, out = panel + p * nr
                    if w == nr {
                        out.update(from: src, count: nr)
                    } else {
                        out.update(from: src, count: w)
                        (out + w).update(repeating: 0, count: nr - w)
                    }
                }
            } else {
                // op(B)[p, j] = B[j, p]: read rows of B (contiguous in p), scatter to the panel.
                if w < nr { for p in 0..<kb { (panel + p * nr + w).update(repeating: 0, count: nr - w) } }
                for j in 0..<w {
                    let src = b + (j0 + j) * ldb + pc
                    for p in 0..<kb { panel[p * nr + j] = src[p] }
                }
            }
            j0 += nr
        }
    }

    /// op(A)[ic..<ic+mb, pc..<pc+kb] into MR-high panels: panel q holds, for each k, the MR values
    /// op(A)[ic + q MR + r, pc + k] (zeros past mb).
    static func packPanelsA(_ trans: Bool, _ a: UnsafePointer<Float>, _ lda: Int, _ ic: Int, _ mb: Int,
                            _ pc: Int, _ kb: Int, _ dst: UnsafeMutablePointer<Float>) {
        var i0 = 0
        while i0 < mb {
            let h = min(mr, mb - i0)
            let panel = dst + i0 * kb
            if trans {
                // op(A)[i, p] = A[p, i]: MR consecutive floats of row p of A.
                for p in 0..<kb {
                    let src = a + (pc + p) * lda + ic + i0, out = panel + p * mr
                    out.update(from: src, count: h)
                    if h < mr { (out + h).update(repeating: 0, count: mr - h) }
                }
            } else {
                if h < mr { for p in 0..<kb { (panel + p * mr + h).update(repeating: 0, count: mr - h) } }
                for r in 0..<h {
                    let src = a + (ic + i0 + r) * lda + pc
                    for p in 0..<kb { panel[p * mr + r] = src[p] }
                }
            }
            i0 += mr
        }
    }

    /// The MR x NR register tile: C = alpha sum_k a[k, :] (x) b[k, :] + beta C over kb steps of the
    /// packed panels (a: kb x MR, b: kb x NR). beta = 0 does not read C.
    @inline(__always)
    static func micro(_ kb: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ alpha: Float, _ beta: Float,
                      _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        typealias V = GemmV
        let w = V.scalarCount
        var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V(), c30 = V(), c31 = V()
        var c40 = V(), c41 = V(), c50 = V(), c51 = V(), c60 = V(), c61 = V(), c70 = V(), c71 = V()
        var pa = a
        var pb = UnsafeRawPointer(b)
        let stride = 2 * w * MemoryLayout<Float>.stride
        for _ in 0..<kb {
            let b0 = pb.loadUnaligned(as: V.self)
            let b1 = pb.loadUnaligned(fromByteOffset: w * MemoryLayout<Float>.stride, as: V.self)
            var s = V(repeating: pa[0]); c00.addProduct(s, b0); c01.addProduct(s, b1)
            s = V(repeating: pa[1]); c10.addProduct(s, b0); c11.addProduct(s, b1)
            s = V(repeating: pa[2]); c20.addProduct(s, b0); c21.addProduct(s, b1)
            s = V(repeating: pa[3]); c30.addProduct(s, b0); c31.addProduct(s, b1)
            s = V(repeating: pa[4]); c40.addProduct(s, b0); c41.addProduct(s, b1)
            s = V(repeating: pa[5]); c50.addProduct(s, b0); c51.addProduct(s, b1)
            s = V(repeating: pa[6]); c60.addProduct(s, b0); c61.addProduct(s, b1)
            s = V(repeating: pa[7]); c70.addProduct(s, b0); c71.addProduct(s, b1)
            pa += 8
            pb += stride
        }
        @inline(__always) func put(_ r: Int, _ x0: V, _ x1: V) {
            let p = UnsafeMutableRawPointer(c + r * ldc)
            let off = w * MemoryLayout<Float>.stride
            if beta == 0 {
                p.storeBytes(of: alpha * x0, as: V.self)
                p.storeBytes(of: alpha * x1, toByteOffset: off, as: V.self)
            } else {
                let y0 = p.loadUnaligned(as: V.self), y1 = p.loadUnaligned(fromByteOffset: off, as: V.self)
                p.storeBytes(of: alpha * x0 + beta * y0, as: V.self)
                p.storeBytes(of: alpha * x1 + beta * y1, toByteOffset: off, as: V.self)
            }
        }
        put(0, c00, c01); put(1, c10, c11); put(2, c20, c21); put(3, c30, c31)
        put(4, c40, c41); put(5, c50, c51); put(6, c60, c61); put(7, c70, c71)
    }
}

/// A float buffer that grows on demand and is reused (64-byte aligned).
final class GrowableFloats {
    private var base: UnsafeMutablePointer<Float>?
    private var capacity = 0

    /// At least `count` floats; the contents are unspecified.
    func ensure(_ count: Int) -> UnsafeMutablePointer<Float> {
        if let b = base, count <= capacity { return b }
        base?.deallocate()
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        base = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        capacity = count
        return base!
    }

    deinit { base?.deallocate() }
}

/// OwnGemm's packing buffers, one set per thread (GEMMs of a network run thousands of times:
/// allocating them per call costs page faults on every large panel). Freed when the thread exits.
final class GemmScratch {
    let packA = GrowableFloats(), packB = GrowableFloats(), tile = GrowableFloats()

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { p in
            if let p { Unmanaged<GemmScratch>.fromOpaque(p).release() }
        }
        return key
    }()

    /// This thread's set (created on first use).
    static var current: GemmScratch {
        if let p = pthread_getspecific(key) { return Unmanaged<GemmScratch>.fromOpaque(p).takeUnretainedValue() }
        let s = GemmScratch()
        pthread_setspecific(key, Unmanaged.passRetained(s).toOpaque())
        return s
    }
}
