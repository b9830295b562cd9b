// DDIM inversion and RePaint inpainting with analytic predictors, where the answers are known:
// the inversion round trip converges at first order, inpainting a Gaussian mixture completes each
// known part with its own component, and the known pixels come back exactly.
import Foundation
import XCTest
@testable import Shared

final class EditTests: XCTestCase {
    let schedule = Schedule.standard()

    /// x_0 -> x_T -> x_0 with the exact eps of N(0.5, 0.5^2): the RMS error over 256 samples on a
    /// ladder of K. DDIM is a first-order solver of the probability-flow ODE and the inversion is
    /// the same scheme run the other way, so the round trip's error is O(1/K): halving the step
    /// should halve it. Measured ratios rise towards 2 (1.54, 1.62, 1.75 from K = 10 to 80: the
    /// first steps from abar_T ~ 4e-5 dominate at small K), so the ladder starts at K = 40 and the
    /// band is [1.6, 2.4].
    func testInversionRoundTripConvergesAtFirstOrder() throws {
        let pred = GaussianMixturePredictor(components: [GaussianComponent(mu: 0.5, sigma: 0.5)], schedule: schedule, sampleShape: [1])
        var r = RandomStream(seed: 3, purpose: .toy, index: 0)
        let n = 256
        let x0 = (0..<n).map { _ in 0.5 + 0.5 * r.nextNormal() }
        var errors: [Double] = []
        for K in [40, 80, 160, 320] {
            let plan = try SamplingPlan(schedule: schedule, steps: K, spacing: .trailing)
            var x = x0
            var none: Trajectory? = nil
            try DDIMInversion.run(x: &x, count: n, y: nil, predictor: pred, plan: plan, trajectory: &none)
            var solver: any ReverseSolver = DDIMStep(plan: plan)
            var noise = Sampling.streams(count: n, seed: 0, firstIndex: 0)
            var corr: [RandomStream] = []
            try Sampling.run(x: &x, y: nil, predictor: pred, solver: &solver, noise: &noise, correctorNoise: &corr, trajectory: &none)
            let rms = (zip(x, x0).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +) / Double(n)).squareRoot()
            errors.append(rms)
        }
        print("inversion round-trip RMS error at K = 40, 80, 160, 320:", errors.map { String(format: "%.3g", $0) })
        for k in 1..<errors.count {
            let ratio = errors[k - 1] / errors[k]
            XCTAssertGreaterThan(ratio, 1.6, "error ratio \(ratio) on halving the step: \(errors)")
            XCTAssertLessThan(ratio, 2.4, "error ratio \(ratio) on halving the step: \(errors)")
        }
    }

    /// The encoding of exact data lies on the probability-flow ODE's map, which for N(mu, s^2) is
    /// affine: x_T = sqrt(abar_T) mu + sqrt(abar_T s^2 + 1 - abar_T) (x_0 - mu) / s. At K = 1000
    /// the inversion matches it to the scheme's error.
    func testInversionFollowsTheProbabilityFlowMap() throws {
        let mu = 0.5, s = 0.5
        let pred = GaussianMixturePredictor(components: [GaussianComponent(mu: mu, sigma: s)], schedule: schedule, sampleShape: [1])
        let plan = try SamplingPlan(schedule: schedule)
        let x0: [Float] = [-0.5, 0, 0.5, 1, 1.5]
        var x = x0
        var none: Trajectory? = nil
        try DDIMInversion.run(x: &x, count: x0.count, y: nil, predictor: pred, plan: plan, trajectory: &none)
        let aT = schedule.alphaBar[schedule.T - 1]
        for (xi, x0i) in zip(x, x0) {
            let exact = aT.squareRoot() * mu + (aT * s * s + 1 - aT).squareRoot() * (Double(x0i) - mu) / s
            XCTAssertEqual(Double(xi), exact, accuracy: 0.01 * max(1, abs(exact)), "x_0 = \(x0i)")
        }
    }

    /// Data from the mixture 1/2 N(-2, 0.3^2 I) + 1/2 N(2, 0.3^2 I) in 4 dimensions; the first two
    /// coordinates are known (2, 2): the conditional law of the others is N(2, 0.3^2) (the -2
    /// component's weight given them is e^-89). DDPM over all 1000 steps (with 50 respaced steps
    /// even plain sampling of N(0.5, 0.5^2) gives std 0.442: the discretisation, not RePaint).
    /// With resampling (j = 10, r = 3) the completions must follow the conditional: mean within
    /// 0.03 (the standard error of 2000 values of std 0.3 is 0.007), std within 10 %, none from
    /// the other component. Plain replacement (r = 1) harmonises worse: measured mean 1.969, std
    /// 0.329, 3 of 2000 values near -2 (r = 3: 2.003, 0.287, none; the run is deterministic).
    func testRePaintCompletesWithTheRightComponent() throws {
        let comps = [GaussianComponent(mu: -2, sigma: 0.3), GaussianComponent(mu: 2, sigma: 0.3)]
        let pred = GaussianMixturePredictor(components: comps, schedule: schedule, sampleShape: [4])
        let n = 1000, d = 4
        let known = (0..<(n * d)).map { $0 % d < 2 ? Float(2) : Float(0) }
        let mask = (0..<(n * d)).map { $0 % d < 2 ? Float(1) : Float(0) }
        let solver = try SamplerOptions().makeSolver(schedule: schedule)
        func complete(resample: Int) throws -> (mean: Double, std: Double, wrong: Int, evals: Int) {
            var repaint = RePaintOptions()
            repaint.jump = 10; repaint.resample = resample
            var (x, noise) = Sampling.initialNoise(count: n, dimension: d, seed: 1, firstIndex: 0)
            var kn = Sampling.streams(count: n, seed: 1, firstIndex: 0, purpose: .inpaint)
            let evals = try RePaint.run(x: &x, known: known, mask: mask, y: nil, predictor: pred, solver: solver, options: repaint,
                                        noise: &noise, inpaintNoise: &kn)
            var unknown: [Double] = []
            for s in 0..<n {
                XCTAssertEqual(x[s * d], 2); XCTAssertEqual(x[s * d + 1], 2)
                unknown += [Double(x[s * d + 2]), Double(x[s * d + 3])]
            }
            let mean = unknown.reduce(0, +) / Double(unknown.count)
            let std = (unknown.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(unknown.count - 1)).squareRoot()
            return (mean, std, unknown.filter { $0 < 0 }.count, evals)
        }
        let r3 = try complete(resample: 3), r1 = try complete(resample: 1)
        print(String(format: "RePaint completions (want mean 2, std 0.3): r = 3: %.3f, %.3f, %d wrong; r = 1: %.3f, %.3f, %d wrong",
                     r3.mean, r3.std, r3.wrong, r1.mean, r1.std, r1.wrong))
        // 1000 descents plus 2 extra passes of 10 levels at each of the 99 jump points 0, 10, ..., 980.
        XCTAssertEqual(r3.evals, 1000 + 99 * 2 * 10)
        XCTAssertEqual(r1.evals, 1000)
        XCTAssertEqual(r3.mean, 2, accuracy: 0.03)
        XCTAssertEqual(r3.std, 0.3, accuracy: 0.03)
        XCTAssertEqual(r3.wrong, 0, "a completion took the other component")
        XCTAssertLessThan(r1.mean, r3.mean - 0.01, "resampling should harmonise better than plain replacement")
    }

    func testRePaintLevelSequence() throws {
        var o = RePaintOptions()
        o.jump = 2; o.resample = 2
        // K = 5: jump points 0, 2 (below K - j = 3); each visited twice.
        XCTAssertEqual(try o.levels(count: 5), [4, 3, 2, 3, 4, 3, 2, 1, 0, 1, 2, 1, 0, -1])
        o.resample = 1
        XCTAssertEqual(try o.levels(count: 3), [2, 1, 0, -1])
        o.resample = 0
        XCTAssertThrowsError(try o.levels(count: 3))
        o.resample = 1000; o.jump = 1000
        XCTAssertThrowsError(try o.levels(count: 100_000)) { XCTAssertTrue("\($0)".contains("moves")) }
    }

    /// The pipelines through the tool: invert then decode; inpaint with a frame mask and a PNG
    /// mask; the one-line errors of a bad mask.
    func testInvertAndInpaintThroughTheTool() throws {
        let dir = temporaryDirectory()
        let spec = "gaussian mu=0.5 sigma=0.5"
        var f = Frame(metadata: ["kind": "batch"])
        f["x"] = Tensor((0..<32).map { Float($0 % 8) / 8 }, shape: [8, 4])
        let data = try encode([f])
        let inv = try runTool("denoise", ["invert", "--analytic", spec, "--shape", "4", "--steps", "100", "--spacing", "trailing", "--quiet"], stdin: data)
        XCTAssertEqual(inv.status, 0, inv.stderr)
        let xT = try decode(inv.stdout)
        XCTAssertEqual(xT.first?["t"]?.shape, [8])
        let back = try runTool("denoise", ["--analytic", spec, "--sampler", "ddim", "--steps", "100", "--spacing", "trailing", "--from", "999", "--quiet"], stdin: inv.stdout)
        XCTAssertEqual(back.status, 0, back.stderr)
        let rec = try decode(back.stdout)[0]["x"]!.floats
        let err = zip(rec, f["x"]!.floats).map { abs($0 - $1) }.max()!
        // In process the RMS error is 0.031 at K = 80 and falls as 1/K: 0.04 bounds the largest of 8.
        XCTAssertLessThan(err, 0.04, "round trip through the tools")

        var m = Frame(metadata: ["kind": "mask"])
        m["mask"] = Tensor([Float(1), 1, 0, 0], shape: [4])
        let maskPath = dir.appendingPathComponent("mask.st").path
        try m.save(path: maskPath)
        let args = ["inpaint", "--analytic", spec, "--shape", "4", "--steps", "20", "--jump", "5", "--resample", "3", "--quiet", "--seed", "4"]
        let r = try runTool("denoise", args + ["--mask", maskPath], stdin: data)
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = try decode(r.stdout)[0]["x"]!.floats
        for s in 0..<8 { XCTAssertEqual(out[s * 4], f["x"]!.floats[s * 4]); XCTAssertEqual(out[s * 4 + 1], f["x"]!.floats[s * 4 + 1]) }
        // Batching does not change the samples.
        let r2 = try runTool("denoise", args + ["--mask", maskPath, "--batch", "3"], stdin: data)
        XCTAssertEqual(try decode(r2.stdout).flatMap { $0["x"]!.floats }, out)

        // A PNG mask for images: left half known.
        var img = Frame(metadata: ["kind": "batch"])
        img["x"] = Tensor([Float](repeating: 0.5, count: 2 * 16), shape: [2, 1, 4, 4])
        let png = dir.appendingPathComponent("m.png").path
        try PNG.write8(path: png, width: 4, height: 4, channels: 1, pixels: (0..<16).map { $0 % 4 < 2 ? 255 : 0 })
        let ri = try runTool("denoise", ["inpaint", "--analytic", spec, "--steps", "10", "--resample", "1", "--quiet", "--mask", png], stdin: try encode([img]))
        XCTAssertEqual(ri.status, 0, ri.stderr)
        let oi = try decode(ri.stdout)[0]["x"]!.floats
        for s in 0..<2 { for p in 0..<16 where p % 4 < 2 { XCTAssertEqual(oi[s * 16 + p], 0.5) } }

        // Errors: one line each.
        m["mask"] = Tensor([Float(1), 2, 0, 0], shape: [4])
        try m.save(path: maskPath)
        let bad = try runTool("denoise", args + ["--mask", maskPath], stdin: data)
        XCTAssertEqual(bad.status, 1); XCTAssertTrue(bad.stderr.contains("mask values must lie in [0, 1]"), bad.stderr)
        m["mask"] = Tensor([Float(1), 1, 0], shape: [3])
        try m.save(path: maskPath)
        let wrong = try runTool("denoise", args + ["--mask", maskPath], stdin: data)
        XCTAssertEqual(wrong.status, 1); XCTAssertTrue(wrong.stderr.contains("does not fit samples of shape [4]"), wrong.stderr)
        XCTAssertEqual(wrong.stderr.split(separator: "\n").count, 1)
    }
}
