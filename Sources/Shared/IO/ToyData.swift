// 2-D toy data sets for diffusion demos, all scaled to lie in about [-1, 1]^2.
// Sample i draws only from RandomStream(seed, .toy, index: i): the data are a
// function of (seed, i), whatever the batch size. u ~ U(0,1), z ~ N(0,1);
// every set adds `noise` * (z1, z2) to the clean point at the end.
import Foundation

public enum ToyDataset: String, CaseIterable, Sendable {
    case swissroll, moons, eightGaussians = "8gaussians", checkerboard

    /// The default of `noise` (σ of the added Gaussian jitter).
    public var defaultNoise: Double {
        switch self {
        case .swissroll: return 0.02
        case .moons: return 0.05
        case .eightGaussians: return 0.05
        case .checkerboard: return 0
        }
    }

    /// One line per set: the definition used (for the help text and docs).
    public var definition: String {
        switch self {
        case .swissroll:
            return "swissroll: t = 1.5π(1 + 2u), point = (t cos t, t sin t) / (4.5π) (the sklearn roll scaled into the unit disk); default noise 0.02."
        case .moons:
            return "moons: θ = πu; with probability 1/2 the upper moon (cos θ, sin θ), else the lower (1 - cos θ, 0.5 - sin θ); then ((x - 0.5) / 1.5, (y - 0.25) / 1.5), so x in [-1, 1], y in [-0.5, 0.5]; default noise 0.05."
        case .eightGaussians:
            return "8gaussians: centre k uniform in 0..7 at angle 2πk/8 on the circle of radius 0.8; default noise (the per-cluster σ) 0.05."
        case .checkerboard:
            return "checkerboard: uniform on the 8 dark cells of a 4x4 board on [-1, 1]^2 (cells 0.5 wide; cell (col, row) dark when col + row is even, counted from the lower left); default noise 0."
        }
    }

    /// Sample i of the data set.
    public func sample(seed: UInt64, index: Int, noise: Double) -> (Float, Float) {
        var r = RandomStream(seed: seed, purpose: .toy, index: UInt64(index))
        var x: Double, y: Double
        switch self {
        case .swissroll:
            let t = 1.5 * Double.pi * (1 + 2 * r.nextUniform())
            x = t * cos(t) / (4.5 * Double.pi)
            y = t * sin(t) / (4.5 * Double.pi)
        case .moons:
            let theta = Double.pi * r.nextUniform()
            if r.nextUniform() < 0.5 {
                x = cos(theta); y = sin(theta)
            } else {
                x = 1 - cos(theta); y = 0.5 - sin(theta)
            }
            x = (x - 0.5) / 1.5
            y = (y - 0.25) / 1.5
        case .eightGaussians:
            let k = r.nextInt(below: 8)
            let a = 2 * Double.pi * Double(k) / 8
            x = 0.8 * cos(a); y = 0.8 * sin(a)
        case .checkerboard:
            let u = r.nextUniform()
            let col = min(Int(u * 4), 3)
            let row = 2 * r.nextInt(below: 2) + (col % 2)  // col + row even
            x = -1 + 2 * u
            y = -1 + 0.5 * (Double(row) + r.nextUniform())
        }
        if noise > 0 {
            x += noise * Double(r.nextNormal())
            y += noise * Double(r.nextNormal())
        }
        return (Float(x), Float(y))
    }

    /// Samples `range` as `x` F32 [range.count, 2].
    public func batch(seed: UInt64, range: Range<Int>, noise: Double) -> Tensor {
        var out = [Float](repeating: 0, count: 2 * range.count)
        for (j, i) in range.enumerated() {
            let (a, b) = sample(seed: seed, index: i, noise: noise)
            out[2 * j] = a
            out[2 * j + 1] = b
        }
        return Tensor(out, shape: [range.count, 2])
    }
}
