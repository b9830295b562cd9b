// Per-sample reshape of named tensors: [N, ...] -> [N] + shape, the element
// order unchanged (C order). Used to feed images to a vector model
// ([N,1,28,28] -> [N,784]) and to draw a vector model's samples as images.

public enum Reshape {
    /// Reshape every tensor of `frame` named in `names` to [N] + `shape`, N its
    /// first axis. Tensors not present are skipped; a size mismatch is an error
    /// naming the tensor. Other tensors and the metadata pass through.
    public static func apply(_ frame: Frame, names: [String], shape: [Int]) throws -> Frame {
        var out = frame
        let per = shape.reduce(1, *)
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
}
