// Winograd minimal filtering F(4x4, 3x3) for the inference forward of 3x3, stride-1,
// padding-1 convolutions (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural
// Networks", section 4.2, interpolation points 0, 1, -1, 2, -2, inf). Per 6x6 input tile d
// (tiles step by 4 and overlap by 2) and 3x3 filter g, the 4x4 output tile is
//
//     Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A
//
//           [ 4  0 -5  0  1  0 ]        [  1/4     0     0  ]
//           [ 0 -4 -4  1  1  0 ]        [ -1/6  -1/6  -1/6  ]        [ 1  1  1  1  1  0 ]
//     B^T = [ 0  4 -4 -1  1  0 ]    G = [ -1/6   1/6  -1/6  ]  A^T = [ 0  1 -1  2 -2  0 ]
//           [ 0 -2 -1  2  1  0 ]        [ 1/24  1/12   1/6  ]        [ 0  1  1  4  4  0 ]
//           [ 0  2 -1 -2  1  0 ]        [ 1/24 -1/12   1/6  ]        [ 0  1 -1  8 -8  1 ]
//           [ 0  4  0 -5  0  1 ]        [  0     0     1    ]
//
// 36 products per 16 outputs (2.25 per output against 4 for F(2x2, 3x3) and 9 direct): the
// 36 matrix products M[ξ] = U[ξ] V[ξ] (U [cout, cin], V [cin, tiles]) cost 0.56x the GEMM
// work of F(2x2). The larger transform constants cost accuracy: the measured error against a
// float64 direct convolution (Winograd4Tests: 5.0e-6 of max |y|, about 13x F(2x2)'s) is fine for
// sampling; training keeps F(2x2) (Winograd.swift), whose backward this path does not need:
// a backward after this forward recomputes its transforms from the input.
//
// Layouts as in Winograd.swift with 36 blocks (ξ = 6 i + j): U[ξ][co][ci], V[ξ][ci][t],
// M[ξ][co][t], blocks `Winograd.blockStride` apart. Tile t = sample offset * th*tw + ty*tw + tx,
// th = ceil(h/4), tw = ceil(w/4). The zero-padded input plane ((4th+2) x (4tw+2), the image at
// (1, 1)) is kept as its four column phases Q_p[r][j] = pad[r][4j + p]: window column b of
// tile j is then Q_b[j] (b < 4) or Q_{b-4}[j + 1], contiguous loads over neighbouring tiles,
// so one SIMD vector holds L tiles of a tile row (as F(2x2)'s even/odd split does). The output
// transform's planes Y_{a,c}[t] = Y[4 ty + a][4 tx + c] are linear in the tile t, so it runs
// over all tiles of a plane at once, 16 per vector. (Window planes linear in t for the input
// transform as well were measured no faster: its cost is its 36 store streams, not its width.)
import Foundation

/// Tile geometry of an h x w plane for F(4x4, 3x3).
struct Winograd4Geometry {
    let h: Int, w: Int
    /// Tile rows / columns (ceil(h/4), ceil(w/4)) and tiles per plane.
    let th: Int, tw: Int
    var tiles: Int { th * tw }
    /// Rows of the zero-padded input plane (4th + 2) and columns of each of its four phases.
    var padRows: Int { 4 * th + 2 }
    var phaseCols: Int { tw + 1 }

    init(h: Int, w: Int) {
        self.h = h; self.w = w
        th = (h + 3) / 4; tw = (w + 3) / 4
    }

    /// Tiles per vector of the input transform (along a tile row): 8, 4 or 2.
    var rowLanes: Int { tw >= 8 ? 8 : tw >= 4 ? 4 : 2 }
    /// Tiles per vector of the output transform (over all tiles of the plane): 16, 8, 4 or 2.
    var lanes: Int { tiles >= 16 ? 16 : tiles >= 8 ? 8 : tiles >= 4 ? 4 : 2 }
    /// Whether F(4x4) serves this plane: at least 2 tile columns (w >= 5); narrower planes take F(2x2).
    var supported: Bool { tw >= 2 }
    /// Scratch floats of one chunk: the input phases or the output planes, whichever is larger.
    var scratch: Int { max(4 * padRows * phaseCols, 16 * tiles) }
}

enum Winograd4 {
    /// Samples transformed and multiplied together: as many as keep V (and M) of the group within
    /// about 448 KiB, so that the GEMMs read them from L2 (36 blocks of [channels, tiles] each).
    /// Measured on bench-unet-28 (Zen 4, 1 MiB L2; interleaved pairs, DDIM-50): groups of >= 96
    /// tiles 1.15x faster than F(2x2)'s >= 256 tiles, >= 48 tiles (this budget at 64 channels)
    /// another 1.11x, >= 16 tiles no faster.
    static func groupSize(_ geo: Winograd4Geometry, channels: Int) -> Int {
        max(1, (448 << 10) / (36 * channels * geo.tiles * MemoryLayout<Float>.size))
    }

    // MARK: the three 1-D transforms (each applied to rows, then to columns)

    /// G x for one column x = (a, b, c) of a filter: 6 values. In float64 (filters are few).
    @inline(__always) static func g6<T: SIMD>(_ a: T, _ b: T, _ c: T) -> (T, T, T, T, T, T) where T.Scalar == Double {
        let s = a + c
        return (a / 4, -(s + b) / 6, (b - s) / 6, a / 24 + b / 12 + c / 6, a / 24 - b / 12 + c / 6, c)
    }

    /// B^T d for one line d0...d5 of a 6x6 window.
    @inline(__always) static func bt<V: SIMD>(_ d0: V, _ d1: V, _ d2: V, _ d3: V, _ d4: V, _ d5: V)
        -> (V, V, V, V, V, V) where V.Scalar == Float {
        let a = d4 - 4 * d2, b = d3 - 4 * d1, c = d4 - d2, e = 2 * (d3 - d1)
        return (4 * d0 - 5 * d2 + d4, a + b, a - b, c + e, c - e, 4 * d1 - 5 * d3 + d5)
    }

    /// A^T m for one line m0...m5 of a 6x6 product tile: 4 outputs.
    @inline(__always) static func at<V: SIMD>(_ m0: V, _ m1: V, _ m2: V, _ m3: V, _ m4: V, _ m5: V)
        -> (V, V, V, V) where V.Scalar == Float {
        let s = m1 + m2, d = m1 - m2, s2 = m3 + m4, d2 = m3 - m4
        return (m0 + s + s2, d + 2 * d2, s + 4 * s2, d + 8 * d2 + m5)
    }

    // MARK: filter transform U = G g G^T

    /// U[ξ][co][ci] = (G g[co, ci] G^T)[i][j] for weights g [cout, cin, 3, 3], computed in float64.
    static func filterTransform(_ g: UnsafePointer<Float>, _ U: UnsafeMutablePointer<Float>, cout: Int, cin: Int) {
        let stride = cout * cin
        for k in 0..<stride {
            let f = g + 9 * k
            // q = G f: G applied down the columns, all three columns at once (lanes 0...2)
            let r0 = SIMD4<Double>(Double(f[0]), Double(f[1]), Double(f[2]), 0)
            let r1 = SIMD4<Double>(Double(f[3]), Double(f[4]), Double(f[5]), 0)
            let r2 = SIMD4<Double>(Double(f[6]), Double(f[7]), Double(f[8]), 0)
            let q = g6(r0, r1, r2)
            // U row i = G applied along row i of q
            @inline(__always) func put(_ qi: SIMD4<Double>, _ i: Int) {
                let u = g6(SIMD2<Double>(qi[0], 0), SIMD2<Double>(qi[1], 0), SIMD2<Double>(qi[2], 0))
                let base = U + 6 * i * stride + k
                base[0] = Float(u.0[0]); base[stride] = Float(u.1[0]); base[2 * stride] = Float(u.2[0])
                base[3 * stride] = Float(u.3[0]); base[4 * stride] = Float(u.4[0]); base[5 * stride] = Float(u.5[0])
            }
            put(q.0, 0); put(q.1, 1); put(q.2, 2); put(q.3, 3); put(q.4, 4); put(q.5, 5)
        }
    }

    // MARK: input transform V = B^T d B

    /// V[ξ][ci][t0 + tile] = (B^T d B)[i][j] for every tile of one sample x [cin, h, w], L tiles
    /// per vector. `pad` holds the four input phases (geo.scratch floats); `T` is the chunk's tile count.
    static func inputTransform<V: SIMD>(_: V.Type, _ x: UnsafePointer<Float>, cin: Int, _ geo: Winograd4Geometry,
                                        _ Vt: UnsafeMutablePointer<Float>, T: Int, t0: Int,
                                        pad: UnsafeMutablePointer<Float>) where V.Scalar == Float {
        let h = geo.h, w = geo.w, tw = geo.tw, pw = geo.phaseCols, L = V.scalarCount
        let plane = geo.padRows * pw
        let Q0 = pad, Q1 = pad + plane, Q2 = pad + 2 * plane, Q3 = pad + 3 * plane
        // Cells no channel writes (the zero border) are zeroed once.
        pad.initialize(repeating: 0, count: 4 * plane)
        let xi = Winograd.blockStride(rows: cin, T: T)
        for ci in 0..<cin {
            // pad[iy + 1][ix + 1] = x[iy][ix], pad column c in phase c % 4 at c / 4
            let xc = x + ci * h * w
            for iy in 0..<h {
                let row = (iy + 1) * pw
                splitPhases(xc + iy * w, w, Q0 + row, Q1 + row, Q2 + row, Q3 + row)
            }
            let v = Vt + ci * T + t0
            for ty in 0..<geo.th {
                Winograd.forEachVector(tw, L) { j in
                    // window row a: B^T applied along its 6 columns (lanes: L neighbouring tiles)
                    @inline(__always) func row(_ a: Int) -> (V, V, V, V, V, V) {
                        let o = (4 * ty + a) * pw + j
                        return bt(Winograd.ld(Q0 + o), Winograd.ld(Q1 + o), Winograd.ld(Q2 + o),
                                  Winograd.ld(Q3 + o), Winograd.ld(Q0 + o + 1), Winograd.ld(Q1 + o + 1))
                    }
                    let r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3), r4 = row(4), r5 = row(5)
                    // then down the 6 rows, column k of the row results: V[i][k]
                    let p = v + ty * tw + j
                    @inline(__always) func put(_ c: (V, V, V, V, V, V), _ k: Int) {
                        Winograd.st(c.0, p + k * xi); Winograd.st(c.1, p + (6 + k) * xi)
                        Winograd.st(c.2, p + (12 + k) * xi); Winograd.st(c.3, p + (18 + k) * xi)
                        Winograd.st(c.4, p + (24 + k) * xi); Winograd.st(c.5, p + (30 + k) * xi)
                    }
                    put(bt(r0.0, r1.0, r2.0, r3.0, r4.0, r5.0), 0)
                    put(bt(r0.1, r1.1, r2.1, r3.1, r4.1, r5.1), 1)
                    put(bt(r0.2, r1.2, r2.2, r3.2, r4.2, r5.2), 2)
                    put(bt(r0.3, r1.3, r2.3, r3.3, r4.3, r5.3), 3)
                    put(bt(r0.4, r1.4, r2.4, r3.4, r4.4, r5.4), 4)
                    put(bt(r0.5, r1.5, r2.5, r3.5, r4.5, r5.5), 5)
                }
            }
        }
    }

    /// One image row src[0 ..< w] into its padded row's phases: pad column c = ix + 1 goes to
    /// Q_{c % 4}[c / 4], i.e. for ix = 4k + r: Q1[k], Q2[k], Q3[k], Q0[k + 1] (r = 0...3).
    /// 4 or 2 groups of 4 pixels per vector (a last vector may overlap the one before: pure
    /// stores of the same values), the w % 4 pixels left one by one.
    @inline(__always) static func splitPhases(_ src: UnsafePointer<Float>, _ w: Int,
                                              _ Q0: UnsafeMutablePointer<Float>, _ Q1: UnsafeMutablePointer<Float>,
                                              _ Q2: UnsafeMutablePointer<Float>, _ Q3: UnsafeMutablePointer<Float>) {
        let groups = w / 4
        if groups >= 4 {
            Winograd.forEachVector(groups, 4) { k in
                let v: SIMD16<Float> = Winograd.ld(src + 4 * k)
                let a = v.evenHalf, b = v.oddHalf   // r = 0, 2 and r = 1, 3
                Winograd.st(a.evenHalf, Q1 + k); Winograd.st(a.oddHalf, Q3 + k)
                Winograd.st(b.evenHalf, Q2 + k); Winograd.st(b.oddHalf, Q0 + k + 1)
            }
        } else if groups >= 2 {
            Winograd.forEachVector(groups, 2) { k in
                let v: SIMD8<Float> = Winograd.ld(src + 4 * k)
                let a = v.evenHalf, b = v.oddHalf
                Winograd.st(a.evenHalf, Q1 + k); Winograd.st(a.oddHalf, Q3 + k)
                Winograd.st(b.evenHalf, Q2 + k); Winograd.st(b.oddHalf, Q0 + k + 1)
            }
        } else if groups == 1 {
            Q1[0] = src[0]; Q2[0] = src[1]; Q3[0] = src[2]; Q0[1] = src[3]
        }
        let Q = (Q0, Q1, Q2, Q3)
        for ix in (4 * groups)..<w {
            let c = ix + 1
            switch c & 3 {
            case 0: Q.0[c >> 2] = src[ix]
            case 1: Q.1[c >> 2] = src[ix]
            case 2: Q.2[c >> 2] = src[ix]
            default: Q.3[c >> 2] = src[ix]
            }
        }
    }

    // MARK: output transform Y = A^T m A

    /// Output planes Y_{a,c}[ty tw + tx] = Y[4 ty + a][4 tx + c] (at plane + (4a + c) tiles, a, c
    /// = 0...3) of output channel co of one sample, L consecutive tiles per vector (across tile rows).
    static func outputTransform<V: SIMD>(_: V.Type, _ M: UnsafePointer<Float>, co: Int, cout: Int,
                                         _ geo: Winograd4Geometry, T: Int, t0: Int,
                                         _ plane: UnsafeMutablePointer<Float>) where V.Scalar == Float {
        let xi = Winograd.blockStride(rows: cout, T: T), tiles = geo.tiles
        let m = M + co * T + t0
        Winograd.forEachVector(tiles, V.scalarCount) { t in
            let mt = m + t
            // product row i: A^T applied along its 6 columns
            @inline(__always) func row(_ i: Int) -> (V, V, V, V) {
                let b = mt + 6 * i * xi
                return at(Winograd.ld(b), Winograd.ld(b + xi), Winograd.ld(b + 2 * xi),
                          Winograd.ld(b + 3 * xi), Winograd.ld(b + 4 * xi), Winograd.ld(b + 5 * xi))
            }
            let q0 = row(0), q1 = row(1), q2 = row(2), q3 = row(3), q4 = row(4), q5 = row(5)
            // then down the rows, output column c of the row results: Y[a][c]
            @inline(__always) func put(_ y: (V, V, V, V), _ c: Int) {
                let base = plane + c * tiles + t
                Winograd.st(y.0, base); Winograd.st(y.1, base + 4 * tiles)
                Winograd.st(y.2, base + 8 * tiles); Winograd.st(y.3, base + 12 * tiles)
            }
            put(at(q0.0, q1.0, q2.0, q3.0, q4.0, q5.0), 0)
            put(at(q0.1, q1.1, q2.1, q3.1, q4.1, q5.1), 1)
            put(at(q0.2, q1.2, q2.2, q3.2, q4.2, q5.2), 2)
            put(at(q0.3, q1.3, q2.3, q3.3, q4.3, q5.3), 3)
        }
    }

    /// y[oy][ox] = Y[oy][ox] + v (+ res[oy][ox]) from the output planes of `outputTransform`.
    /// The w / 4 whole groups of 4 pixels of a row go 4 or 2 groups per vector (phases
    /// interleaved; a last vector may overlap the one before: pure stores of the same values),
    /// the w % 4 pixels left one by one. Same additions in the same order either way.
    static func epilogue(_ plane: UnsafePointer<Float>, _ geo: Winograd4Geometry, _ v: Float,
                         _ res: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>) {
        let w = geo.w, tw = geo.tw, tiles = geo.tiles, groups = w / 4
        for oy in 0..<geo.h {
            // row oy = 4 ty + a: pixel 4 tx + c is Y_{a,c}[ty tw + tx]
            let Y0 = plane + 4 * (oy & 3) * tiles, Y1 = Y0 + tiles, Y2 = Y1 + tiles, Y3 = Y2 + tiles
            let r = (oy >> 2) * tw, d = y + oy * w, rs = res.map { $0 + oy * w }
            if groups >= 4 {
                Winograd.forEachVector(groups, 4) { j in
                    var a = SIMD8<Float>(), b = SIMD8<Float>(), o = SIMD16<Float>()
                    a.evenHalf = Winograd.ld(Y0 + r + j); a.oddHalf = Winograd.ld(Y2 + r + j)
                    b.evenHalf = Winograd.ld(Y1 + r + j); b.oddHalf = Winograd.ld(Y3 + r + j)
                    o.evenHalf = a; o.oddHalf = b                      // Y0, Y1, Y2, Y3 of tile j, then of j + 1 ...
                    o = o + SIMD16(repeating: v)
                    if let rs { o = o + Winograd.ld(rs + 4 * j) }
                    Winograd.st(o, d + 4 * j)
                }
            } else if groups >= 2 {
                Winograd.forEachVector(groups, 2) { j in
                    var a = SIMD4<Float>(), b = SIMD4<Float>(), o = SIMD8<Float>()
                    a.evenHalf = Winograd.ld(Y0 + r + j); a.oddHalf = Winograd.ld(Y2 + r + j)
                    b.evenHalf = Winograd.ld(Y1 + r + j); b.oddHalf = Winograd.ld(Y3 + r + j)
                    o.evenHalf = a; o.oddHalf = b
                    o = o + SIMD8(repeating: v)
                    if let rs { o = o + Winograd.ld(rs + 4 * j) }
                    Winograd.st(o, d + 4 * j)
                }
            }
            let first = groups >= 2 ? 4 * groups : 0
            for ox in first..<w {
                let s = Y0[(ox & 3) * tiles + r + (ox >> 2)]
                if let rs { d[ox] = s + v + rs[ox] } else { d[ox] = s + v }
            }
        }
    }
}

// MARK: - Conv2d's F(4x4, 3x3) path

extension Conv2d {
    /// y = conv(x) + b (+ sampleBias, + residual) by F(4x4, 3x3); the contract of `forward`.
    func winograd4Forward(_ x: UnsafePointer<Float>, sampleBias: UnsafePointer<Float>?,
                          residual: UnsafePointer<Float>?) -> UnsafeMutablePointer<Float> {
        let geo = Winograd4Geometry(h: h, w: w)
        precondition(geo.supported, "Conv2d: F(4x4, 3x3) needs planes at least 5 wide")
        let P = h * w, inSize = cin * P, cin = self.cin, cout = self.cout
        let y = out.ensure(n * cout * P)
        let chunks = prepareChunks(n)
        let group = Winograd4.groupSize(geo, channels: max(cin, cout)), maxT = group * geo.tiles
        ws.reserve(0, chunks: chunks, count: 36 * Winograd.blockStride(rows: cin, T: maxT))
        ws.reserve(1, chunks: chunks, count: 36 * Winograd.blockStride(rows: cout, T: maxT))
        ws.reserve(3, chunks: chunks, count: geo.scratch)
        let U = wgU.transformed(weight.w, count: 9 * cout * cin, tile: 4, size: 36 * cout * cin) { g, U in
            Winograd4.filterTransform(g, U, cout: cout, cin: cin)
        }
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
                        let t0 = (s - samples.lowerBound) * geo.tiles, xs = x + s * inSize
                        switch geo.rowLanes {
                        case 8: Winograd4.inputTransform(SIMD8<Float>.self, xs, cin: cin, geo, V, T: T, t0: t0, pad: plane)
                        case 4: Winograd4.inputTransform(SIMD4<Float>.self, xs, cin: cin, geo, V, T: T, t0: t0, pad: plane)
                        default: Winograd4.inputTransform(SIMD2<Float>.self, xs, cin: cin, geo, V, T: T, t0: t0, pad: plane)
                        }
                    }
                }
                // M[ξ] = U[ξ] V[ξ]: [cout, cin] x [cin, T]
                ConvProfile.time(1) {
                    for xi in 0..<36 {
                        BLAS.gemm(false, false, cout, T, cin, 1, U + xi * cout * cin, cin, V + xi * sV, T, 0, M + xi * sM, T)
                    }
                }
                ConvProfile.time(0) {
                    for s in samples {
                        let t0 = (s - samples.lowerBound) * geo.tiles
                        for o in 0..<cout {
                            switch geo.lanes {
                            case 16: Winograd4.outputTransform(SIMD16<Float>.self, M, co: o, cout: cout, geo, T: T, t0: t0, plane)
                            case 8: Winograd4.outputTransform(SIMD8<Float>.self, M, co: o, cout: cout, geo, T: T, t0: t0, plane)
                            case 4: Winograd4.outputTransform(SIMD4<Float>.self, M, co: o, cout: cout, geo, T: T, t0: t0, plane)
                            default: Winograd4.outputTransform(SIMD2<Float>.self, M, co: o, cout: cout, geo, T: T, t0: t0, plane)
                            }
                            let v = b[o] + (sampleBias?[s * cout + o] ?? 0)
                            Winograd4.epilogue(plane, geo, v, residual.map { $0 + (s * cout + o) * P },
                                               y + (s * cout + o) * P)
                        }
                    }
                }
            }
        }
        return y
    }
}

/// The output tile of the inference forward's Winograd path: 4 (F(4x4, 3x3), the default) or 2
/// when the environment has DDPM_WINOGRAD=2x2, read once. Measured on bench-unet-28 (Zen 4,
/// 6 interleaved pairs, docs/BENCHMARKS.md): DDIM-50 1.16x and a DDPM step 1.10x faster than
/// with F(2x2), once the phase split and the epilogue were vectorised and the filter transform
/// cached (before that F(4x4) was 0.90x).
public enum WinogradTile {
    public static let inference: Int = {
        guard let v = ProcessInfo.processInfo.environment["DDPM_WINOGRAD"], !v.isEmpty else { return 4 }
        if v == "2x2" { return 2 }
        if v == "4x4" { return 4 }
        writeStderr("warning: DDPM_WINOGRAD='\(v)' is neither '4x4' nor '2x2'; using 4x4\n")
        return 4
    }()

    /// As recorded in benchmark JSON.
    public static var description: String {
        inference == 4 ? "F(4x4,3x3) inference, F(2x2,3x3) training" : "F(2x2,3x3)"
    }
}
