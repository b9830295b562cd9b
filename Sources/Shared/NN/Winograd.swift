// Winograd minimal filtering F(2x2, 3x3) for the 3x3, stride-1, padding-1
// convolutions (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural
// Networks", section 4.1). Per 4x4 input tile d (tiles step by 2 and overlap by
// 2) and 3x3 filter g, the 2x2 output tile is
//
//     Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A                              (Lavin & Gray eq. 8)
//
//           [ 1  0 -1  0 ]          [ 1    0    0  ]
//     B^T = [ 0  1  1  0 ]      G = [ 1/2  1/2  1/2 ]     A^T = [ 1  1  1  0 ]
//           [ 0 -1  1  0 ]          [ 1/2 -1/2  1/2 ]           [ 0  1 -1 -1 ]
//           [ 0  1  0 -1 ]          [ 0    0    1  ]
//
// Summed over input channels, the 16 elementwise products become 16 matrix
// products M[ξ] = U[ξ] V[ξ] (ξ = one of the 4x4 tile positions) with
// U[ξ] [cout, cin] (transformed filters) and V[ξ] [cin, tiles] (transformed
// input): 16 multiplies per output tile and input channel instead of 36.
//
// Backward is the chain rule through the same linear maps (each transform's
// adjoint is its transpose): dM = A dY A^T, dU[ξ] = dM[ξ] V[ξ]^T,
// dg = G^T dU G, dV[ξ] = U[ξ]^T dM[ξ], dd = B dV B^T (scatter-added over the
// overlapping tiles).
//
// Layouts (ξ = 4 i + j for tile row i, column j):
//   U[ξ][co][ci] at U + (ξ cout + co) cin + ci
//   V[ξ][ci][t]  at V + ξ S(cin) + ci T + t     (T = tiles of the whole chunk)
//   M[ξ][co][t]  at M + ξ S(cout) + co T + t
// with the block stride S(rows) = rows T + 16: without the 16 floats of slack the
// 16 blocks are often a multiple of 4 KiB apart (e.g. 32 x 3136 floats) and the 16
// streams a transform reads or writes at once fall into the same cache sets (this
// made the transforms several times slower).
// Tile t = sample offset * th*tw + ty*tw + tx, th = ceil(h/2), tw = ceil(w/2).
// Tiles are read from a zero-padded copy of each plane ((2th+2) x (2tw+2), the
// image at offset (1, 1)), so partial tiles at odd sizes read zeros; outputs are
// produced on a 2th x 2tw plane of which only the h x w part is used.

/// Tile geometry of an h x w plane for F(2x2, 3x3).
struct WinogradGeometry {
    let h: Int, w: Int
    /// Tile rows / columns (ceil(h/2), ceil(w/2)) and tiles per plane.
    let th: Int, tw: Int
    var tiles: Int { th * tw }
    /// Zero-padded input plane: (2th + 2) x (2tw + 2).
    var padRows: Int { 2 * th + 2 }
    var padCols: Int { 2 * tw + 2 }
    /// Output plane covered by the tiles: 2th x 2tw.
    var outCols: Int { 2 * tw }

    init(h: Int, w: Int) {
        self.h = h; self.w = w
        th = (h + 1) / 2; tw = (w + 1) / 2
    }
}

import Foundation

public enum Winograd {
    /// Samples transformed and multiplied together: enough for >= 256 tiles (GEMMs of
    /// [cout, cin] x [cin, >= 256]) while V and M stay small enough for the caches
    /// (a whole 16-sample chunk at 28x28 was slower: ~13 MB per buffer streamed from memory).
    static func groupSize(_ geo: WinogradGeometry) -> Int { max(1, (256 + geo.tiles - 1) / geo.tiles) }

    /// Distance in floats between the ξ blocks of V or M ([rows, T] each).
    @inline(__always) static func blockStride(rows: Int, T: Int) -> Int { rows * T + 16 }

    // MARK: filter transform U = G g G^T and its adjoint dg = G^T dU G

    /// U[ξ][co][ci] = (G g[co, ci] G^T)[i][j] for weights g [cout, cin, 3, 3].
    static func filterTransform(_ g: UnsafePointer<Float>, _ U: UnsafeMutablePointer<Float>, cout: Int, cin: Int) {
        let stride = cout * cin
        for k in 0..<(cout * cin) {
            let f = g + 9 * k
            // q = G f (4 x 3): rows of G applied to the filter rows f0, f1, f2
            let f0 = SIMD3<Float>(f[0], f[1], f[2]), f1 = SIMD3<Float>(f[3], f[4], f[5])
            let f2 = SIMD3<Float>(f[6], f[7], f[8])
            let q = (f0, 0.5 * (f0 + f1 + f2), 0.5 * (f0 - f1 + f2), f2)
            // U = q G^T (4 x 4): the same combination on each row q_i's entries
            @inline(__always) func put(_ qi: SIMD3<Float>, _ i: Int) {
                U[(4 * i) * stride + k] = qi[0]
                U[(4 * i + 1) * stride + k] = 0.5 * (qi[0] + qi[1] + qi[2])
                U[(4 * i + 2) * stride + k] = 0.5 * (qi[0] - qi[1] + qi[2])
                U[(4 * i + 3) * stride + k] = qi[2]
            }
            put(q.0, 0); put(q.1, 1); put(q.2, 2); put(q.3, 3)
        }
    }

    /// dg[co, ci] += G^T dU[co][ci] G (the adjoint of `filterTransform`).
    static func filterTransformAdjoint(_ dU: UnsafePointer<Float>, _ dg: UnsafeMutablePointer<Float>, cout: Int, cin: Int) {
        let stride = cout * cin
        for k in 0..<(cout * cin) {
            // p = G^T dU (3 x 4), G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1]
            let u0 = load4b(dU + k, stride, 0), u1 = load4b(dU + k, stride, 4)
            let u2 = load4b(dU + k, stride, 8), u3 = load4b(dU + k, stride, 12)
            let p = (u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3)
            // dg += p G (3 x 3): the same combination on each row p_r's entries
            let d = dg + 9 * k
            @inline(__always) func add(_ pr: SIMD4<Float>, _ r: Int) {
                d[3 * r] += pr[0] + 0.5 * (pr[1] + pr[2])
                d[3 * r + 1] += 0.5 * (pr[1] - pr[2])
                d[3 * r + 2] += 0.5 * (pr[1] + pr[2]) + pr[3]
            }
            add(p.0, 0); add(p.1, 1); add(p.2, 2)
        }
    }

    // MARK: input transform V = B^T d B and its adjoint dd = B dV B^T

    /// V[ξ][ci][t0 + tile] = (B^T d B)[i][j] for every tile of one sample x [cin, h, w].
    /// `pad` is scratch of geo.padRows * geo.padCols floats; `T` is the tile count of the chunk.
    static func inputTransform(_ x: UnsafePointer<Float>, cin: Int, _ geo: WinogradGeometry,
                               _ V: UnsafeMutablePointer<Float>, T: Int, t0: Int, pad: UnsafeMutablePointer<Float>) {
        if vectorWidth(geo) == 8 { return inputTransformVec(SIMD8<Float>.self, x, cin: cin, geo, V, T: T, t0: t0, pad: pad) }
        if vectorWidth(geo) == 4 { return inputTransformVec(SIMD4<Float>.self, x, cin: cin, geo, V, T: T, t0: t0, pad: pad) }
        let h = geo.h, w = geo.w, pc = geo.padCols
        pad.initialize(repeating: 0, count: geo.padRows * pc)   // the border stays zero
        let xi = blockStride(rows: cin, T: T)
        for ci in 0..<cin {
            let xc = x + ci * h * w
            for iy in 0..<h { (pad + (iy + 1) * pc + 1).update(from: xc + iy * w, count: w) }
            let v = V + ci * T + t0
            for ty in 0..<geo.th {
                let r0 = pad + 2 * ty * pc, r1 = r0 + pc, r2 = r1 + pc, r3 = r2 + pc
                let vt = v + ty * geo.tw
                for tx in 0..<geo.tw {
                    let c = 2 * tx
                    // rows: s = B^T d  (s0 = d0 - d2, s1 = d1 + d2, s2 = d2 - d1, s3 = d1 - d3)
                    let d0 = load4(r0 + c), d1 = load4(r1 + c), d2 = load4(r2 + c), d3 = load4(r3 + c)
                    let s = (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
                    // columns: V = s B, the same combination on each row's entries
                    store4bt(s.0, vt + tx, xi, 0)
                    store4bt(s.1, vt + tx, xi, 4)
                    store4bt(s.2, vt + tx, xi, 8)
                    store4bt(s.3, vt + tx, xi, 12)
                }
            }
        }
    }

    /// dx[cin, h, w] = sum over tiles of B dV B^T placed at each tile (overwrites dx).
    static func inputTransformAdjoint(_ dV: UnsafePointer<Float>, cin: Int, _ geo: WinogradGeometry,
                                      _ dx: UnsafeMutablePointer<Float>, T: Int, t0: Int, pad: UnsafeMutablePointer<Float>) {
        if vectorWidth(geo) == 8 { return inputTransformAdjointVec(SIMD8<Float>.self, dV, cin: cin, geo, dx, T: T, t0: t0, pad: pad) }
        if vectorWidth(geo) == 4 { return inputTransformAdjointVec(SIMD4<Float>.self, dV, cin: cin, geo, dx, T: T, t0: t0, pad: pad) }
        let h = geo.h, w = geo.w, pc = geo.padCols
        let xi = blockStride(rows: cin, T: T)
        for ci in 0..<cin {
            pad.initialize(repeating: 0, count: geo.padRows * pc)
            let v = dV + ci * T + t0
            for ty in 0..<geo.th {
                let r0 = pad + 2 * ty * pc, r1 = r0 + pc, r2 = r1 + pc, r3 = r2 + pc
                let vt = v + ty * geo.tw
                for tx in 0..<geo.tw {
                    // columns first: e_i = (row i of dV) B^T, with B^T's columns
                    // (1,0,0,0), (0,1,-1,1), (-1,1,1,0), (0,0,0,-1)
                    let e0 = bAdj(load4b(vt + tx, xi, 0)), e1 = bAdj(load4b(vt + tx, xi, 4))
                    let e2 = bAdj(load4b(vt + tx, xi, 8)), e3 = bAdj(load4b(vt + tx, xi, 12))
                    // rows: dd = B e, the same combination across rows
                    let c = 2 * tx
                    add4(r0 + c, e0)
                    add4(r1 + c, e1 - e2 + e3)
                    add4(r2 + c, e1 + e2 - e0)
                    add4(r3 + c, -e3)
                }
            }
            let xc = dx + ci * h * w
            for iy in 0..<h { (xc + iy * w).update(from: pad + (iy + 1) * pc + 1, count: w) }
        }
    }

    // MARK: output transform Y = A^T m A and its adjoint dm = A dY A^T

    /// plane[2th x 2tw] = A^T m A per tile for output channel co of one sample.
    static func outputTransform(_ M: UnsafePointer<Float>, co: Int, cout: Int, _ geo: WinogradGeometry,
                                T: Int, t0: Int, _ plane: UnsafeMutablePointer<Float>) {
        if vectorWidth(geo) == 8 { return outputTransformVec(SIMD8<Float>.self, M, co: co, cout: cout, geo, T: T, t0: t0, plane) }
        if vectorWidth(geo) == 4 { return outputTransformVec(SIMD4<Float>.self, M, co: co, cout: cout, geo, T: T, t0: t0, plane) }
        let xi = blockStride(rows: cout, T: T), oc = geo.outCols
        let m = M + co * T + t0
        for ty in 0..<geo.th {
            let mt = m + ty * geo.tw
            let y0 = plane + 2 * ty * oc, y1 = y0 + oc
            for tx in 0..<geo.tw {
                // rows: r0 = m0 + m1 + m2, r1 = m1 - m2 - m3 (each a row of 4)
                let m0 = load4b(mt + tx, xi, 0), m1 = load4b(mt + tx, xi, 4)
                let m2 = load4b(mt + tx, xi, 8), m3 = load4b(mt + tx, xi, 12)
                let r0 = m0 + m1 + m2, r1 = m1 - m2 - m3
                // columns: the same combination on each row's entries
                let c = 2 * tx
                y0[c] = r0[0] + r0[1] + r0[2]; y0[c + 1] = r0[1] - r0[2] - r0[3]
                y1[c] = r1[0] + r1[1] + r1[2]; y1[c + 1] = r1[1] - r1[2] - r1[3]
            }
        }
    }

    /// dM[ξ][co][t0 + tile] = (A dY A^T)[i][j] for channel co of one sample, where dY
    /// is the dy plane [h, w] extended by zeros to 2th x 2tw (`plane` is scratch).
    static func outputTransformAdjoint(_ dy: UnsafePointer<Float>, co: Int, cout: Int, _ geo: WinogradGeometry,
                                       _ dM: UnsafeMutablePointer<Float>, T: Int, t0: Int, _ plane: UnsafeMutablePointer<Float>) {
        if vectorWidth(geo) == 8 { return outputTransformAdjointVec(SIMD8<Float>.self, dy, co: co, cout: cout, geo, dM, T: T, t0: t0, plane) }
        if vectorWidth(geo) == 4 { return outputTransformAdjointVec(SIMD4<Float>.self, dy, co: co, cout: cout, geo, dM, T: T, t0: t0, plane) }
        let xi = blockStride(rows: cout, T: T), oc = geo.outCols, h = geo.h, w = geo.w
        plane.initialize(repeating: 0, count: 2 * geo.th * oc)
        for oy in 0..<h { (plane + oy * oc).update(from: dy + oy * w, count: w) }
        let m = dM + co * T + t0
        for ty in 0..<geo.th {
            let mt = m + ty * geo.tw
            let y0 = plane + 2 * ty * oc, y1 = y0 + oc
            for tx in 0..<geo.tw {
                let c = 2 * tx
                // columns: u_a = (row a of dY) A^T = (y_a0, y_a0 + y_a1, y_a0 - y_a1, -y_a1)
                let a0 = y0[c], a1 = y0[c + 1], b0 = y1[c], b1 = y1[c + 1]
                let u0 = SIMD4<Float>(a0, a0 + a1, a0 - a1, -a1)
                let u1 = SIMD4<Float>(b0, b0 + b1, b0 - b1, -b1)
                // rows: dm = A u = (u0, u0 + u1, u0 - u1, -u1)
                store4b(u0, mt + tx, xi, 0)
                store4b(u0 + u1, mt + tx, xi, 4)
                store4b(u0 - u1, mt + tx, xi, 8)
                store4b(-u1, mt + tx, xi, 12)
            }
        }
    }

    // MARK: vectorised transforms (tile rows of >= 4 tiles)
    //
    // The per-tile code above reads or writes 16 strided ξ streams one float at a time.
    // Here one SIMD vector holds L neighbouring tiles of a tile row: the 16 V (or M)
    // entries of those tiles are then 16 contiguous vectors. The 4x4 input windows of
    // neighbouring tiles start 2 columns apart, so the padded plane is first split into
    // its even and odd columns: E[r][j] = pad[r][2j], O[r][j] = pad[r][2j + 1]; window
    // column b of tile tx is then E (b = 0), O (b = 1), E shifted by one (b = 2) or O
    // shifted by one (b = 3), each a contiguous load at tx. A row of tw tiles is
    // covered by vectors starting at 0, L, 2L, ... and a last one at tw - L that may
    // overlap the previous one (it rewrites the same values, so the forward transforms
    // stay pure stores). The arithmetic per element is the per-tile code's, in the same
    // order, so both give the same bits.

    /// Whether the vectorised transforms are used (where tile rows allow). Public so that
    /// the tests can compare them with the per-tile code; not for use elsewhere.
    nonisolated(unsafe) public static var vectorTransforms = true

    /// Tiles per vector for this geometry: 8, 4, or 0 (per-tile code) when tile rows
    /// are shorter than 4 tiles.
    @inline(__always) static func vectorWidth(_ geo: WinogradGeometry) -> Int {
        guard vectorTransforms else { return 0 }
        return geo.tw >= 8 ? 8 : geo.tw >= 4 ? 4 : 0
    }

    /// Vector starts covering 0..<count with width L <= count (the last one is count - L).
    @inline(__always) static func forEachVector(_ count: Int, _ L: Int, _ body: (Int) -> Void) {
        var j = 0
        while true {
            body(min(j, count - L))
            j += L
            if j >= count { break }
        }
    }
    @inline(__always) static func ld<V: SIMD>(_ p: UnsafePointer<Float>) -> V where V.Scalar == Float {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }
    @inline(__always) static func ld<V: SIMD>(_ p: UnsafeMutablePointer<Float>) -> V where V.Scalar == Float {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }
    @inline(__always) static func st<V: SIMD>(_ v: V, _ p: UnsafeMutablePointer<Float>) where V.Scalar == Float {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }

    /// even[j] = src[2j], odd[j] = src[2j + 1] for j < half, 8 or 4 pairs per vector
    /// (the last vector may overlap the previous one: pure stores of the same values).
    @inline(__always) static func deinterleave(_ src: UnsafePointer<Float>, _ half: Int,
                                               _ even: UnsafeMutablePointer<Float>, _ odd: UnsafeMutablePointer<Float>) {
        if half >= 8 {
            forEachVector(half, 8) { j in
                let v: SIMD16<Float> = ld(src + 2 * j)
                st(v.evenHalf, even + j); st(v.oddHalf, odd + j)
            }
        } else if half >= 4 {
            forEachVector(half, 4) { j in
                let v: SIMD8<Float> = ld(src + 2 * j)
                st(v.evenHalf, even + j); st(v.oddHalf, odd + j)
            }
        } else {
            for j in 0..<half { even[j] = src[2 * j]; odd[j] = src[2 * j + 1] }
        }
    }

    /// dst[2j] = even[j] + a (+ res[2j]), dst[2j + 1] = odd[j] + a (+ res[2j + 1]) for
    /// j < half, in that order of additions (adding a = 0 changes no value). dst must not
    /// overlap the inputs (an overlapping last vector rewrites the same values).
    @inline(__always) static func interleave(_ even: UnsafePointer<Float>, _ odd: UnsafePointer<Float>, _ half: Int,
                                             _ dst: UnsafeMutablePointer<Float>, add a: Float, _ res: UnsafePointer<Float>?) {
        if half >= 8 {
            forEachVector(half, 8) { j in
                var y = SIMD16<Float>()
                y.evenHalf = ld(even + j); y.oddHalf = ld(odd + j)
                y = y + SIMD16(repeating: a)
                if let res { y = y + ld(res + 2 * j) }
                st(y, dst + 2 * j)
            }
        } else if half >= 4 {
            forEachVector(half, 4) { j in
                var y = SIMD8<Float>()
                y.evenHalf = ld(even + j); y.oddHalf = ld(odd + j)
                y = y + SIMD8(repeating: a)
                if let res { y = y + ld(res + 2 * j) }
                st(y, dst + 2 * j)
            }
        } else {
            for j in 0..<half {
                if let res {
                    dst[2 * j] = even[j] + a + res[2 * j]; dst[2 * j + 1] = odd[j] + a + res[2 * j + 1]
                } else {
                    dst[2 * j] = even[j] + a; dst[2 * j + 1] = odd[j] + a
                }
            }
        }
    }

    /// `inputTransform` with L = V.scalarCount tiles per vector (needs tw >= L).
    /// `pad` holds the E and O planes, each padRows x (tw + 1) (= padRows * padCols in all).
    static func inputTransformVec<V: SIMD>(_: V.Type, _ x: UnsafePointer<Float>, cin: Int, _ geo: WinogradGeometry,
                                           _ Vt: UnsafeMutablePointer<Float>, T: Int, t0: Int,
                                           pad: UnsafeMutablePointer<Float>) where V.Scalar == Float {
        let h = geo.h, w = geo.w, tw = geo.tw, pw = tw + 1, L = V.scalarCount
        let E = pad, O = pad + geo.padRows * pw
        // Cells no channel writes (the zero border) are zeroed once.
        pad.initialize(repeating: 0, count: 2 * geo.padRows * pw)
        let xi = blockStride(rows: cin, T: T)
        for ci in 0..<cin {
            // pad[iy + 1][ix + 1] = x[iy][ix]: even ix go to O[.][ix / 2], odd ix to E[.][(ix + 1) / 2]
            let xc = x + ci * h * w
            for iy in 0..<h {
                let src = xc + iy * w, er = E + (iy + 1) * pw, or = O + (iy + 1) * pw
                deinterleave(src, w / 2, or, er + 1)
                if w % 2 == 1 { or[w / 2] = src[w - 1] }
            }
            let v = Vt + ci * T + t0
            for ty in 0..<geo.th {
                let e = E + 2 * ty * pw, o = O + 2 * ty * pw
                forEachVector(tw, L) { j in
                    // window row a, columns b = 0...3 (L tiles each)
                    @inline(__always) func row(_ a: Int) -> (V, V, V, V) {
                        (ld(e + a * pw + j), ld(o + a * pw + j), ld(e + a * pw + j + 1), ld(o + a * pw + j + 1))
                    }
                    let d0 = row(0), d1 = row(1), d2 = row(2), d3 = row(3)
                    // rows: s = B^T d  (s0 = d0 - d2, s1 = d1 + d2, s2 = d2 - d1, s3 = d1 - d3)
                    // columns: V = s B, (s0 - s2, s1 + s2, s2 - s1, s1 - s3) on each row
                    let p = v + ty * tw + j
                    @inline(__always) func put(_ s: (V, V, V, V), _ first: Int) {
                        st(s.0 - s.2, p + first * xi); st(s.1 + s.2, p + (first + 1) * xi)
                        st(s.2 - s.1, p + (first + 2) * xi); st(s.1 - s.3, p + (first + 3) * xi)
                    }
                    put((d0.0 - d2.0, d0.1 - d2.1, d0.2 - d2.2, d0.3 - d2.3), 0)
                    put((d1.0 + d2.0, d1.1 + d2.1, d1.2 + d2.2, d1.3 + d2.3), 4)
                    put((d2.0 - d1.0, d2.1 - d1.1, d2.2 - d1.2, d2.3 - d1.3), 8)
                    put((d1.0 - d3.0, d1.1 - d3.1, d1.2 - d3.2, d1.3 - d3.3), 12)
                }
            }
        }
    }

    /// `inputTransformAdjoint` with L tiles per vector. Adding a tile's columns 2, 3 to
    /// the plane shifted by one tile against its columns 0, 1 made every vector add
    /// read memory that the previous (unaligned) store had just partly written (slow:
    /// no store-to-load forwarding). Instead each window column b has its own plane
    /// P_b[r][tx] (contributions of tile tx at pad column 2tx + b), added only at equal
    /// offsets, and the pixels are put together at the end:
    ///     pad[r][2k] = P_0[r][k] + P_2[r][k - 1],   pad[r][2k + 1] = P_1[r][k] + P_3[r][k - 1].
    /// (The same terms as the per-tile code summed in another order: equal to rounding.)
    /// Vectors of a tile row must not overlap (rows add up over two tile rows): the last
    /// one, started at tw - L, adds zeros in the lanes the previous vector already did.
    /// `pad` needs `inputAdjointScratch(geo)` floats.
    static func inputTransformAdjointVec<V: SIMD>(_: V.Type, _ dV: UnsafePointer<Float>, cin: Int, _ geo: WinogradGeometry,
                                                  _ dx: UnsafeMutablePointer<Float>, T: Int, t0: Int,
                                                  pad: UnsafeMutablePointer<Float>) where V.Scalar == Float {
        let h = geo.h, w = geo.w, tw = geo.tw, pw = tw + 1, L = V.scalarCount
        let plane = geo.padRows * pw
        // P_b row r starts at pad + b * plane + r * pw + 1; the float before it stays zero (P_b[r][-1]).
        @inline(__always) func P(_ b: Int, _ r: Int) -> UnsafeMutablePointer<Float> { pad + b * plane + r * pw + 1 }
        let rowE = pad + 4 * plane, rowO = rowE + pw
        let xi = blockStride(rows: cin, T: T)
        // lanes of the last vector that the previous one covered
        let lastStart = tw - L, skip = (tw % L == 0) ? 0 : L - tw % L
        var lane = V.zero
        for i in 0..<L { lane[i] = Float(i) }
        let done = lane .< Float(skip)
        for ci in 0..<cin {
            pad.initialize(repeating: 0, count: 4 * plane)
            let v = dV + ci * T + t0
            for ty in 0..<geo.th {
                forEachVector(tw, L) { j in
                    let p = v + ty * tw + j
                    // columns first: e_i = (row i of dV) B^T = (v0, v1 - v2 + v3, v1 + v2 - v0, -v3)
                    @inline(__always) func eRow(_ i: Int) -> (V, V, V, V) {
                        var v0: V = ld(p + 4 * i * xi), v1: V = ld(p + (4 * i + 1) * xi)
                        var v2: V = ld(p + (4 * i + 2) * xi), v3: V = ld(p + (4 * i + 3) * xi)
                        if j == lastStart && skip > 0 {
                            v0.replace(with: 0, where: done); v1.replace(with: 0, where: done)
                            v2.replace(with: 0, where: done); v3.replace(with: 0, where: done)
                        }
                        return (v0, v1 - v2 + v3, v1 + v2 - v0, -v3)
                    }
                    let e0 = eRow(0), e1 = eRow(1), e2 = eRow(2), e3 = eRow(3)
                    // rows: dd = B e = (e0, e1 - e2 + e3, e1 + e2 - e0, -e3), added at window row a
                    @inline(__always) func add(_ g: (V, V, V, V), _ a: Int) {
                        let r = 2 * ty + a
                        let p0 = P(0, r) + j, p1 = P(1, r) + j, p2 = P(2, r) + j, p3 = P(3, r) + j
                        st(ld(p0) + g.0, p0); st(ld(p1) + g.1, p1); st(ld(p2) + g.2, p2); st(ld(p3) + g.3, p3)
                    }
                    add(e0, 0)
                    add((e1.0 - e2.0 + e3.0, e1.1 - e2.1 + e3.1, e1.2 - e2.2 + e3.2, e1.3 - e2.3 + e3.3), 1)
                    add((e1.0 + e2.0 - e0.0, e1.1 + e2.1 - e0.1, e1.2 + e2.2 - e0.2, e1.3 + e2.3 - e0.3), 2)
                    add((-e3.0, -e3.1, -e3.2, -e3.3), 3)
                }
            }
            // dx[iy][ix] = pad[iy + 1][ix + 1]: even ix from pad column 2k + 1 (k = ix / 2),
            // odd ix from pad column 2k (k = (ix + 1) / 2)
            let xc = dx + ci * h * w
            for iy in 0..<h {
                let r = iy + 1
                let p0 = P(0, r), p1 = P(1, r), p2 = P(2, r), p3 = P(3, r)
                for k in 0..<tw { rowO[k] = p1[k] + p3[k - 1] }
                for k in 0..<pw { rowE[k] = p0[k] + p2[k - 1] }
                let d = xc + iy * w
                interleave(rowO, rowE + 1, w / 2, d, add: 0, nil)
                if w % 2 == 1 { d[w - 1] = rowO[w / 2] }
            }
        }
    }

    /// Scratch floats `inputTransformAdjoint` needs (the per-tile code needs padRows * padCols).
    static func inputAdjointScratch(_ geo: WinogradGeometry) -> Int {
        max(geo.padRows * geo.padCols, 4 * geo.padRows * (geo.tw + 1) + 2 * (geo.tw + 1))
    }

    /// `outputTransform` with L tiles per vector. Writes the even output columns to
    /// plane[0 ..< 2th*tw] and the odd ones to plane[2th*tw ..< 4th*tw] (each [2th, tw]).
    static func outputTransformVec<V: SIMD>(_: V.Type, _ M: UnsafePointer<Float>, co: Int, cout: Int, _ geo: WinogradGeometry,
                                            T: Int, t0: Int, _ plane: UnsafeMutablePointer<Float>) where V.Scalar == Float {
        let xi = blockStride(rows: cout, T: T), tw = geo.tw, L = V.scalarCount
        let Ye = plane, Yo = plane + 2 * geo.th * tw
        let m = M + co * T + t0
        for ty in 0..<geo.th {
            forEachVector(tw, L) { j in
                let mt = m + ty * tw + j
                @inline(__always) func mm(_ k: Int) -> V { ld(mt + k * xi) }
                // rows: r0 = m0 + m1 + m2, r1 = m1 - m2 - m3, for each column b
                @inline(__always) func r(_ b: Int) -> (V, V) {
                    let m0 = mm(b), m1 = mm(4 + b), m2 = mm(8 + b), m3 = mm(12 + b)
                    return (m0 + m1 + m2, m1 - m2 - m3)
                }
                let c0 = r(0), c1 = r(1), c2 = r(2), c3 = r(3)
                // columns: the same combination on each row's entries
                let o0 = 2 * ty * tw + j, o1 = o0 + tw
                st(c0.0 + c1.0 + c2.0, Ye + o0); st(c1.0 - c2.0 - c3.0, Yo + o0)
                st(c0.1 + c1.1 + c2.1, Ye + o1); st(c1.1 - c2.1 - c3.1, Yo + o1)
            }
        }
    }

    /// `outputTransformAdjoint` with L tiles per vector; `plane` is scratch for the even
    /// and odd columns of dY extended by zeros ([2th, tw] each).
    static func outputTransformAdjointVec<V: SIMD>(_: V.Type, _ dy: UnsafePointer<Float>, co: Int, cout: Int,
                                                   _ geo: WinogradGeometry, _ dM: UnsafeMutablePointer<Float>,
                                                   T: Int, t0: Int, _ plane: UnsafeMutablePointer<Float>) where V.Scalar == Float {
        let xi = blockStride(rows: cout, T: T), tw = geo.tw, h = geo.h, w = geo.w, L = V.scalarCount
        let De = plane, Do = plane + 2 * geo.th * tw
        for oy in 0..<h {
            let src = dy + oy * w, de = De + oy * tw, dd = Do + oy * tw
            deinterleave(src, w / 2, de, dd)
            if w % 2 == 1 { de[tw - 1] = src[w - 1]; dd[tw - 1] = 0 }
        }
        if h % 2 == 1 {   // the row below the image
            (De + h * tw).initialize(repeating: 0, count: tw)
            (Do + h * tw).initialize(repeating: 0, count: tw)
        }
        let m = dM + co * T + t0
        for ty in 0..<geo.th {
            forEachVector(tw, L) { j in
                let i0 = 2 * ty * tw + j, i1 = i0 + tw
                let a0: V = ld(De + i0), a1: V = ld(Do + i0), b0: V = ld(De + i1), b1: V = ld(Do + i1)
                // columns: u_a = (row a of dY) A^T = (y_a0, y_a0 + y_a1, y_a0 - y_a1, -y_a1)
                let u0 = (a0, a0 + a1, a0 - a1, -a1), u1 = (b0, b0 + b1, b0 - b1, -b1)
                // rows: dm = A u = (u0, u0 + u1, u0 - u1, -u1)
                let p = m + ty * tw + j
                st(u0.0, p); st(u0.1, p + xi); st(u0.2, p + 2 * xi); st(u0.3, p + 3 * xi)
                st(u0.0 + u1.0, p + 4 * xi); st(u0.1 + u1.1, p + 5 * xi)
                st(u0.2 + u1.2, p + 6 * xi); st(u0.3 + u1.3, p + 7 * xi)
                st(u0.0 - u1.0, p + 8 * xi); st(u0.1 - u1.1, p + 9 * xi)
                st(u0.2 - u1.2, p + 10 * xi); st(u0.3 - u1.3, p + 11 * xi)
                st(-u1.0, p + 12 * xi); st(-u1.1, p + 13 * xi); st(-u1.2, p + 14 * xi); st(-u1.3, p + 15 * xi)
            }
        }
    }

    /// y[oy][ox] = Y[oy][ox] + v (+ res[oy][ox]) for Y given as its even columns Ye and
    /// odd columns Yo ([2th, tw] each, from `outputTransformVec`).
    static func addEpilogue(_ Ye: UnsafePointer<Float>, _ Yo: UnsafePointer<Float>, _ geo: WinogradGeometry,
                            _ v: Float, _ res: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>) {
        let w = geo.w, tw = geo.tw, half = w / 2
        for oy in 0..<geo.h {
            let e = Ye + oy * tw, o = Yo + oy * tw, d = y + oy * w
            interleave(e, o, half, d, add: v, res.map { $0 + oy * w })
            if w % 2 == 1 {
                if let res { d[w - 1] = e[half] + v + res[oy * w + w - 1] } else { d[w - 1] = e[half] + v }
            }
        }
    }

    // MARK: helpers

    @inline(__always) static func load4(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
        SIMD4(p[0], p[1], p[2], p[3])
    }
    @inline(__always) static func load4(_ p: UnsafeMutablePointer<Float>) -> SIMD4<Float> {
        SIMD4(p[0], p[1], p[2], p[3])
    }
    @inline(__always) static func add4(_ p: UnsafeMutablePointer<Float>, _ v: SIMD4<Float>) {
        p[0] += v[0]; p[1] += v[1]; p[2] += v[2]; p[3] += v[3]
    }
    /// Loads entries ξ = first..first+3 (one tile row) of the ξ-strided array at p.
    @inline(__always) static func load4b(_ p: UnsafePointer<Float>, _ xi: Int, _ first: Int) -> SIMD4<Float> {
        SIMD4(p[first * xi], p[(first + 1) * xi], p[(first + 2) * xi], p[(first + 3) * xi])
    }
    @inline(__always) static func load4b(_ p: UnsafeMutablePointer<Float>, _ xi: Int, _ first: Int) -> SIMD4<Float> {
        load4b(UnsafePointer(p), xi, first)
    }
    @inline(__always) static func store4b(_ v: SIMD4<Float>, _ p: UnsafeMutablePointer<Float>, _ xi: Int, _ first: Int) {
        p[first * xi] = v[0]; p[(first + 1) * xi] = v[1]; p[(first + 2) * xi] = v[2]; p[(first + 3) * xi] = v[3]
    }
    /// v B^T for one row v of dV: (v0, v1 - v2 + v3, v1 + v2 - v0, -v3).
    @inline(__always) static func bAdj(_ v: SIMD4<Float>) -> SIMD4<Float> {
        SIMD4(v[0], v[1] - v[2] + v[3], v[1] + v[2] - v[0], -v[3])
    }
    /// Stores s B (s one row of B^T d) at ξ = first..first+3: (s0 - s2, s1 + s2, s2 - s1, s1 - s3).
    @inline(__always) static func store4bt(_ s: SIMD4<Float>, _ p: UnsafeMutablePointer<Float>, _ xi: Int, _ first: Int) {
        store4b(SIMD4(s[0] - s[2], s[1] + s[2], s[2] - s[1], s[1] - s[3]), p, xi, first)
    }
}

// MARK: - Conv2d's Winograd path

/// A layer's transformed filters U = G g G^T, recomputed only when the weights (compared bit
/// for bit with a copy) or the tile change: sampling runs the forward hundreds of times with the
/// same weights, and F(4x4)'s transform (float64, 36 values per filter) cost 3.5 % of a DDIM run.
final class WinogradFilterCache {
    private let u = Buffer(), key = Buffer()
    private var tile = 0, count = 0

    /// U for the weights g (count floats) and this tile, `size` floats, computed by `transform`.
    func transformed(_ g: UnsafePointer<Float>, count: Int, tile: Int, size: Int,
                     _ transform: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) -> UnsafeMutablePointer<Float> {
        let U = u.ensure(size)
        if tile == self.tile && count == self.count && memcmp(key.ptr, g, count * MemoryLayout<Float>.size) == 0 {
            return U
        }
        transform(g, U)
        key.ensure(count).update(from: g, count: count)
        self.tile = tile; self.count = count
        return U
    }
}

extension Conv2d {
    /// Whether this layer's 3x3 stride-1 convolutions take the Winograd path (training's F(2x2)).
    var usesWinograd: Bool { winogradTile(inference: false) != nil }

    /// The Winograd output tile of this layer's forward: 2 (F(2x2, 3x3)), 4 (F(4x4, 3x3)) or nil
    /// (im2col). Rule for `auto` (measured on bench-unet-28, see the commit messages): at least 8
    /// input channels (the 1-channel conv_in gains nothing: its GEMM has k = 1); F(4x4) for an
    /// inference forward on planes at least 5 wide unless `WinogradTile.inference` says 2x2 (DDPM_WINOGRAD=2x2).
    func winogradTile(inference: Bool) -> Int? {
        guard kernel == 3 && stride == 1 else { return nil }
        let f4 = Winograd4Geometry(h: h, w: w).supported
        switch algorithm {
        case .im2col: return nil
        case .winograd: return 2
        case .winograd4: return f4 ? 4 : 2
        case .auto:
            guard cin >= 8 else { return nil }
            return inference && f4 && WinogradTile.inference == 4 ? 4 : 2
        }
    }

    /// Set-up shared by the Winograd forward and backward: the samples per group, the
    /// per-chunk V (workspace slot 0) and M / dM (slot 1) blocks for a group's tiles, and
    /// U = G g G^T of the current weights.
    func winogradPrepare(_ geo: WinogradGeometry, chunks: Int) -> (group: Int, U: UnsafeMutablePointer<Float>) {
        let group = Winograd.groupSize(geo), maxT = group * geo.tiles
        ws.reserve(0, chunks: chunks, count: 16 * Winograd.blockStride(rows: cin, T: maxT))
        ws.reserve(1, chunks: chunks, count: 16 * Winograd.blockStride(rows: cout, T: maxT))
        let U = wgU.transformed(weight.w, count: 9 * cout * cin, tile: 2, size: 16 * cout * cin) { g, U in
            Winograd.filterTransform(g, U, cout: cout, cin: cin)
        }
        return (group, U)
    }

    /// Same contract as `forward` (y = conv(x) + b + sampleBias + residual), computed as
    /// M[ξ] = U[ξ] V[ξ] per batch chunk followed by the output transform.
    func winogradForward(_ x: UnsafePointer<Float>, sampleBias: UnsafePointer<Float>?,
                         residual: UnsafePointer<Float>?) -> UnsafeMutablePointer<Float> {
        let geo = WinogradGeometry(h: h, w: w)
        let P = h * w, inSize = cin * P, cin = self.cin, cout = self.cout
        let y = out.ensure(n * cout * P)
        let chunks = prepareChunks(n)
        let (group, U) = winogradPrepare(geo, chunks: chunks)
        ws.reserve(3, chunks: chunks, count: geo.padRows * geo.padCols)
        let b = UnsafePointer(bias.w)
        parallelFor(chunks) { c in
            let V = self.ws.ptr(0, chunk: c), M = self.ws.ptr(1, chunk: c), plane = self.ws.ptr(3, chunk: c)
            let chunk = chunkRange(c, of: chunks, n: self.n)
            for g in Swift.stride(from: chunk.lowerBound, to: chunk.upperBound, by: group) {
            let samples = g..<min(g + group, chunk.upperBound)
            let T = samples.count * geo.tiles
            let sV = Winograd.blockStride(rows: cin, T: T), sM = Winograd.blockStride(rows: cout, T: T)
            ConvProfile.time(0) {
                for s in samples {
                    Winograd.inputTransform(x + s * inSize, cin: cin, geo, V, T: T, t0: (s - samples.lowerBound) * geo.tiles, pad: plane)
                }
            }
            // M[ξ] = U[ξ] V[ξ]: [cout, cin] x [cin, T]
            ConvProfile.time(1) {
                for xi in 0..<16 {
                    BLAS.gemm(false, false, cout, T, cin, 1, U + xi * cout * cin, cin, V + xi * sV, T, 0, M + xi * sM, T)
                }
            }
            ConvProfile.time(0) {
                for s in samples {
                    let t0 = (s - samples.lowerBound) * geo.tiles
                    for o in 0..<cout {
                        Winograd.outputTransform(M, co: o, cout: cout, geo, T: T, t0: t0, plane)
                        let v = b[o] + (sampleBias?[s * cout + o] ?? 0)
                        let dst = y + (s * cout + o) * P
                        let res = residual.map { $0 + (s * cout + o) * P }
                        if Winograd.vectorWidth(geo) > 0 {   // the vectorised transform wrote even and odd columns apart
                            Winograd.addEpilogue(plane, plane + 2 * geo.th * geo.tw, geo, v, res, dst)
                            continue
                        }
                        for oy in 0..<geo.h {
                            let src = plane + oy * geo.outCols, d = dst + oy * geo.w
                            if let res {
                                let r = res + oy * geo.w
                                for ox in 0..<geo.w { d[ox] = src[ox] + v + r[ox] }
                            } else {
                                for ox in 0..<geo.w { d[ox] = src[ox] + v }
                            }
                        }
                    }
                }
            }
            }
        }
        return y
    }

    /// Same contract as `backward`: dW += G^T (sum_chunks dM V^T) G, db += sum dy,
    /// dx = input-transform adjoint of U^T dM. Per-chunk partial sums are added in chunk order.
    func winogradBackward(_ dy: UnsafePointer<Float>, inputGrad: Bool,
                          channelSums: UnsafeMutablePointer<Float>?) -> UnsafeMutablePointer<Float>? {
        let x = input!
        let geo = WinogradGeometry(h: h, w: w)
        let P = h * w, inSize = cin * P, cin = self.cin, cout = self.cout
        let uCount = 16 * cout * cin
        let chunks = prepareChunks(n)
        let (group, U) = winogradPrepare(geo, chunks: chunks)   // U of the weights forward used
        ws.reserve(2, chunks: chunks, count: uCount + cout)
        ws.reserve(3, chunks: chunks, count: max(Winograd.inputAdjointScratch(geo), 4 * geo.th * geo.tw))
        let dx = inputGrad ? dIn.ensure(n * inSize) : nil
        parallelFor(chunks) { c in
            let V = self.ws.ptr(0, chunk: c), dM = self.ws.ptr(1, chunk: c)
            let part = self.ws.ptr(2, chunk: c), plane = self.ws.ptr(3, chunk: c)
            part.initialize(repeating: 0, count: uCount + cout)
            let chunk = chunkRange(c, of: chunks, n: self.n)
            for g in Swift.stride(from: chunk.lowerBound, to: chunk.upperBound, by: group) {
            let samples = g..<min(g + group, chunk.upperBound)
            let T = samples.count * geo.tiles
            let sV = Winograd.blockStride(rows: cin, T: T), sM = Winograd.blockStride(rows: cout, T: T)
            ConvProfile.time(0) {
                for s in samples {
                    let t0 = (s - samples.lowerBound) * geo.tiles
                    Winograd.inputTransform(x + s * inSize, cin: cin, geo, V, T: T, t0: t0, pad: plane)
                    for o in 0..<cout {
                        let dys = dy + (s * cout + o) * P
                        let v = vsum(dys, P)
                        part[uCount + o] += v
                        channelSums?[s * cout + o] = v
                        Winograd.outputTransformAdjoint(dys, co: o, cout: cout, geo, dM, T: T, t0: t0, plane)
                    }
                }
            }
            ConvProfile.time(1) {
                for xi in 0..<16 {
                    let Vx = V + xi * sV, dMx = dM + xi * sM
                    // dU[ξ] += dM[ξ] V[ξ]^T: [cout, T] x [T, cin]
                    BLAS.gemm(false, true, cout, cin, T, 1, dMx, T, Vx, T, 1, part + xi * cout * cin, cin)
                    // dV[ξ] = U[ξ]^T dM[ξ] ([cin, T]), written over V[ξ] (no longer needed)
                    if dx != nil {
                        BLAS.gemm(true, false, cin, T, cout, 1, U + xi * cout * cin, cin, dMx, T, 0, Vx, T)
                    }
                }
            }
            if let dx {
                ConvProfile.time(2) {
                    for s in samples {
                        Winograd.inputTransformAdjoint(V, cin: cin, geo, dx + s * inSize, T: T,
                                                       t0: (s - samples.lowerBound) * geo.tiles, pad: plane)
                    }
                }
            }
            }
        }
        // Sum the chunk partials in chunk order (into chunk 0's), then dg += G^T dU G.
        let total = ws.ptr(2, chunk: 0)
        for c in 1..<chunks {
            let part = ws.ptr(2, chunk: c)
            for i in 0..<(uCount + cout) { total[i] += part[i] }
        }
        Winograd.filterTransformAdjoint(total, weight.g, cout: cout, cin: cin)
        let gb = bias.g
        for o in 0..<cout { gb[o] += total[uCount + o] }
        return dx
    }
}
