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

enum Winograd {
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

extension Conv2d {
    /// Whether this layer's 3x3 stride-1 convolutions take the Winograd path. Rule for
    /// `auto` (measured on bench-unet-28, see the commit message): at least 8 input
    /// channels (the 1-channel conv_in gains nothing: its GEMM has k = 1).
    var usesWinograd: Bool {
        guard kernel == 3 && stride == 1 else { return false }
        switch algorithm {
        case .im2col: return false
        case .winograd: return true
        case .auto: return cin >= 8
        }
    }

    /// Same contract as `forward` (y = conv(x) + b + sampleBias + residual), computed as
    /// M[ξ] = U[ξ] V[ξ] per batch chunk followed by the output transform.
    func winogradForward(_ x: UnsafePointer<Float>, sampleBias: UnsafePointer<Float>?,
                         residual: UnsafePointer<Float>?) -> UnsafeMutablePointer<Float> {
        let geo = WinogradGeometry(h: h, w: w)
        let P = h * w, inSize = cin * P, cin = self.cin, cout = self.cout
        let y = out.ensure(n * cout * P)
        let chunks = prepareChunks(n)
        let group = Winograd.groupSize(geo), maxT = group * geo.tiles
        ws.reserve(0, chunks: chunks, count: 16 * Winograd.blockStride(rows: cin, T: maxT))
        ws.reserve(1, chunks: chunks, count: 16 * Winograd.blockStride(rows: cout, T: maxT))
        ws.reserve(3, chunks: chunks, count: geo.padRows * geo.padCols)
        let U = wgU.ensure(16 * cout * cin)
        Winograd.filterTransform(weight.w, U, cout: cout, cin: cin)
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
        let group = Winograd.groupSize(geo), maxT = group * geo.tiles
        ws.reserve(0, chunks: chunks, count: 16 * Winograd.blockStride(rows: cin, T: maxT))
        ws.reserve(1, chunks: chunks, count: 16 * Winograd.blockStride(rows: cout, T: maxT))
        ws.reserve(2, chunks: chunks, count: uCount + cout)
        ws.reserve(3, chunks: chunks, count: geo.padRows * geo.padCols)
        let dx = inputGrad ? dIn.ensure(n * inSize) : nil
        let U = wgU.ensure(uCount)
        Winograd.filterTransform(weight.w, U, cout: cout, cin: cin)   // the weights forward used
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
