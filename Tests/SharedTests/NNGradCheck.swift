// Finite-difference gradient checking for the NN layers and networks.
import XCTest
import Shared

/// Random normals from a fixed seed (test data, not part of the library's streams).
func testNormals(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var r = RandomStream(seed: seed, purpose: .toy, index: 999)
    return (0..<n).map { _ in r.nextNormal() * scale }
}

extension UnsafeMutableBufferPointer where Element == Float {
    /// Overwrites all the values (a parameter's `value` or `grad`, a flat store buffer) with `a`.
    func assign(_ a: [Float]) {
        precondition(a.count == count, "assign: \(a.count) values for \(count)")
        _ = update(fromContentsOf: a)
    }
}

/// Replaces every parameter's values by random normals * scale (so zero-initialised
/// layers do not hide gradients from the check).
func randomizeParameters(_ ps: [Parameter], seed: UInt64, scale: Float = 0.3) {
    for (k, p) in ps.enumerated() {
        var r = RandomStream(seed: seed, purpose: .toy, index: UInt64(k))
        for i in 0..<p.count { p.value[i] = r.nextNormal() * scale }
    }
}

/// Central-difference check of d loss / d input and d loss / d parameters, with
/// loss = sum_i w_i out_i (w fixed random normals), the loss summed in Double.
///
/// Tolerance: float32 forward passes carry relative rounding ~1e-7 per operation;
/// summed over a few thousand outputs the loss is uncertain by ~1e-5 .. 1e-4
/// absolute, which the 2h = 2e-2 denominator turns into <= ~5e-3 absolute error
/// in the difference quotient. Truncation error is O(h^2 f''') ~ 1e-4 relative for
/// these smooth layers. So: max |fd - an| <= rel * max |an| + abs, with rel = 2e-2,
/// abs = 5e-3 by default; a wrong index or missing term gives errors of order max|an|.
func gradCheck(_ label: String, input: [Float], params: [Parameter],
               forward: ([Float]) -> [Float], backward: ([Float]) -> [Float],
               coords: Int = 24, h: Float = 1e-2, rel: Double = 2e-2, abs: Double = 5e-3,
               checkInput: Bool = true, minGradient: Double? = nil, file: StaticString = #filePath, line: UInt = #line) {
    let out0 = forward(input)
    let w = testNormals(out0.count, seed: 4242)
    func loss(_ o: [Float]) -> Double {
        var s = 0.0
        for i in 0..<o.count { s += Double(w[i]) * Double(o[i]) }
        return s
    }
    for p in params { p.zeroGrad() }
    _ = forward(input)
    let dx = backward(w)
    let analyticParams = params.map { Array($0.grad) }

    func pick(_ n: Int, _ salt: UInt64) -> [Int] {
        if n <= coords { return Array(0..<n) }
        var r = RandomStream(seed: 77 &+ salt, purpose: .toy, index: 5)
        return (0..<coords).map { _ in r.nextInt(below: n) }
    }
    func compare(_ name: String, _ an: [Float], _ idx: [Int], _ fd: (Int) -> Double) {
        var maxAn = 0.0, maxErr = 0.0, worst = -1, worstFD = 0.0
        for i in idx { maxAn = max(maxAn, Swift.abs(Double(an[i]))) }
        for i in idx {
            let f = fd(i)
            let e = Swift.abs(f - Double(an[i]))
            if e > maxErr { maxErr = e; worst = i; worstFD = f }
        }
        let tol = rel * maxAn + abs
        XCTAssert(maxErr <= tol, "\(label) \(name): max |fd - an| = \(maxErr) > \(tol) at \(worst) (fd \(worstFD), an \(worst >= 0 ? an[worst] : 0)), max|an| \(maxAn)",
                  file: file, line: line)
        if name.hasSuffix("to_k.bias") {
            // softmax(q.(k + b)) = softmax(q.k + q.b): a key bias shifts each score row
            // by a constant, so its gradient is exactly zero (up to rounding).
            XCTAssert(maxAn < 1e-5, "\(label) \(name): key-bias gradient should vanish, max |an| \(maxAn)", file: file, line: line)
        } else {
            // Guard against a vacuous check: the gradient must be visible above the noise.
            let floor = minGradient ?? 10 * abs
            XCTAssert(maxAn > floor || idx.isEmpty, "\(label) \(name): gradient too small to check (max |an| \(maxAn))", file: file, line: line)
        }
    }
    if checkInput {
        var x = input
        compare("input", dx, pick(x.count, 1)) { i in
            let v = x[i]
            x[i] = v + h; let lp = loss(forward(x))
            x[i] = v - h; let lm = loss(forward(x))
            x[i] = v
            return (lp - lm) / Double(2 * h)
        }
    }
    for (k, p) in params.enumerated() {
        compare(p.name, analyticParams[k], pick(p.count, UInt64(k) + 2)) { i in
            let v = p.value[i]
            p.value[i] = v + h; let lp = loss(forward(input))
            p.value[i] = v - h; let lm = loss(forward(input))
            p.value[i] = v
            return (lp - lm) / Double(2 * h)
        }
    }
}
