// Summary statistics of a tensor and the text `tensor info` prints.
import Foundation

public struct TensorStats: Sendable {
    public var count: Int
    public var min: Double
    public var max: Double
    public var mean: Double
    /// Population standard deviation, sqrt(Σ(x - mean)² / n).
    public var std: Double
    /// NaN or infinite elements (excluded from the figures above).
    public var nonFinite: Int

    /// Two passes in Double (mean, then squared deviations): accurate for large n.
    public init(_ t: Tensor) {
        count = t.count
        var lo = Double.infinity, hi = -Double.infinity, sum = 0.0, bad = 0
        func pass1<T>(_ a: [T], _ f: (T) -> Double) {
            for v in a {
                let d = f(v)
                if !d.isFinite { bad += 1; continue }
                sum += d
                if d < lo { lo = d }
                if d > hi { hi = d }
            }
        }
        func pass2<T>(_ a: [T], _ m: Double, _ f: (T) -> Double) -> Double {
            var s = 0.0
            for v in a { let d = f(v); if d.isFinite { s += (d - m) * (d - m) } }
            return s
        }
        let m: Double, ss: Double
        switch t.storage {
        case .f32(let a): pass1(a) { Double($0) }; m = sum / Double(Swift.max(a.count - bad, 1)); ss = pass2(a, m) { Double($0) }
        case .f64(let a): pass1(a) { $0 }; m = sum / Double(Swift.max(a.count - bad, 1)); ss = pass2(a, m) { $0 }
        case .i64(let a): pass1(a) { Double($0) }; m = sum / Double(Swift.max(a.count, 1)); ss = pass2(a, m) { Double($0) }
        case .i32(let a): pass1(a) { Double($0) }; m = sum / Double(Swift.max(a.count, 1)); ss = pass2(a, m) { Double($0) }
        case .u8(let a): pass1(a) { Double($0) }; m = sum / Double(Swift.max(a.count, 1)); ss = pass2(a, m) { Double($0) }
        }
        let n = count - bad
        min = lo; max = hi; mean = n > 0 ? m : .nan
        std = n > 0 ? (ss / Double(n)).squareRoot() : .nan
        nonFinite = bad
    }
}

public enum InfoText {
    static func number(_ v: Double, integer: Bool) -> String {
        if v.isNaN { return "-" }
        if integer && v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return String(format: "%.6g", v)
    }

    /// `tensor info`: describes every frame of each stream (stdin when `paths` is empty) on
    /// `output` (stdout), frame by frame, every write checked; with several streams, each after a
    /// line `== PATH`. Names, paths and metadata are printed with control characters escaped.
    public static func printStreams(_ paths: [String], output: TextOutput = TextOutput()) throws {
        for path in paths.isEmpty ? ["-"] : paths {
            let reader = try FrameReader(pathOrStdin: path)
            if paths.count > 1 { try output.write("== \(path.escapedForTerminal)\n") }
            while let f = try reader.next() {
                try output.write(describe(f, number: reader.framesRead) + "\n")
            }
            if reader.framesRead == 0 { try output.write("(no frames)\n") }
        }
    }

    /// `s` followed by spaces up to `width` characters. (Foundation's padding(toLength:) counts
    /// UTF-16 units and cuts longer strings: it dropped the end of names holding emoji.)
    static func pad(_ s: String, _ width: Int) -> String { s + String(repeating: " ", count: max(0, width - s.count)) }

    /// The lines `tensor info` prints for frame number `n` (1-based).
    public static func describe(_ frame: Frame, number n: Int) -> String {
        var lines = ["frame \(n)  kind: \(frame.kind?.escapedForTerminal ?? "-")"]
        let keys = frame.metadata.keys.sorted().filter { $0 != "kind" }
        let shown = keys.map(\.escapedForTerminal)
        let kw = shown.map(\.count).max() ?? 0
        for (k, key) in zip(keys, shown) {
            lines.append("  " + pad(key, kw) + "  " + frame.metadata[k]!.escapedForTerminal)
        }
        var rows: [[String]] = [["tensor", "dtype", "shape", "min", "max", "mean", "std"]]
        for (name, t) in frame.tensors {
            let s = TensorStats(t)
            let integer = t.dtype == .i64 || t.dtype == .i32 || t.dtype == .u8
            var row = [name.escapedForTerminal, t.dtype.rawValue, "[" + t.shape.map(String.init).joined(separator: ",") + "]",
                       number(s.min.isFinite ? s.min : .nan, integer: integer),
                       number(s.max.isFinite ? s.max : .nan, integer: integer),
                       number(s.mean, integer: false), number(s.std, integer: false)]
            if s.nonFinite > 0 { row[6] += "  (\(s.nonFinite) non-finite)" }
            rows.append(row)
        }
        if frame.tensors.isEmpty {
            lines.append("  (no tensors)")
        } else {
            let widths = (0..<7).map { c in rows.map { $0[c].count }.max()! }
            for r in rows {
                var line = "  "
                for c in 0..<7 {
                    // Names and labels left-aligned, numbers right-aligned.
                    line += c < 3 ? pad(r[c], widths[c])
                                  : String(repeating: " ", count: widths[c] - r[c].count) + r[c]
                    if c < 6 { line += "  " }
                }
                while line.hasSuffix(" ") { line.removeLast() }
                lines.append(line)
            }
        }
        return lines.joined(separator: "\n")
    }
}
