// Per-sample reshape of named tensors: [N, ...] -> [N] + shape, the element
// order unchanged (C order). Used to feed images to a vector model
// ([N,1,28,28] -> [N,784]) and to draw a vector model's samples as images.
import Foundation

public enum Reshape {
    /// Reshape every tensor of `frame` named in `names` to [N] + `shape`, N its
    /// first axis. Tensors not present are skipped; a size mismatch is an error
    /// naming the tensor. Other tensors and the metadata pass through.
    public static func apply(_ frame: Frame, names: [String], shape: [Int]) throws -> Frame {
        var out = frame
        guard let per = Reshape.elements(shape) else { throw DDPMError("a sample shape of \(shape) is too large (dimensions and their product below 2^40)") }
        for name in names {
            guard var t = frame[name] else { continue }
            guard let n = t.shape.first else { throw DDPMError("'\(name)' is a scalar: nothing to reshape per sample") }
            let have = t.shape.dropFirst().reduce(1, *)
            guard have == per else {
                throw DDPMError("'\(name)' has samples of shape \(Array(t.shape.dropFirst())) (\(have) elements), which cannot become \(shape) (\(per) elements)")
            }
            t.shape = [n] + shape
            out[name] = t
        }
        return out
    }

    /// The number of elements of a sample shape, nil unless every dimension and the product are
    /// below 2^40 (what a frame can hold; the dimensions come from the command line).
    public static func elements(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            let (m, overflow) = n.multipliedReportingOverflow(by: d)
            guard d >= 0, d < 1 << 40, !overflow, m < 1 << 40 else { return nil }
            n = m
        }
        return n
    }

    /// `tensor reshape`: every frame of `reader` through `apply` to `writer`; errors name the frame.
    public static func run(names: [String], shape: [Int], reader: FrameReader, writer: FrameWriter) throws {
        guard !names.isEmpty else { throw DDPMError("no tensor names given") }
        guard !shape.isEmpty, shape.allSatisfy({ $0 > 0 }) else { throw DDPMError("a sample shape must list positive sizes (got \(shape))") }
        guard Reshape.elements(shape) != nil else { throw DDPMError("a sample shape of \(shape) is too large (dimensions and their product below 2^40)") }
        while let f = try reader.next() {
            do { try writer.write(try apply(f, names: names, shape: shape)) }
            catch let e as DDPMError { throw DDPMError("frame \(reader.framesRead): \(e.message)") }
        }
    }
}

/// Sizes written as a comma-separated list, e.g. "1,28,28" or "784": the shape of one sample.
public struct SampleDims: Sendable, Equatable, CustomStringConvertible {
    public var dims: [Int]

    public init(_ dims: [Int]) { self.dims = dims }

    /// Reads integers >= 0 separated by commas (spaces allowed); nil when malformed. Zero sizes
    /// are left for the caller to refuse (see `allPositive`), with its own message.
    public init?(_ text: String) {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil && $0! >= 0 }) else { return nil }
        self.init(parts.map { $0! })
    }

    public var allPositive: Bool { dims.allSatisfy { $0 > 0 } }
    public var description: String { dims.map(String.init).joined(separator: ",") }
}
