// NumPy .npy files (format versions 1.0, 2.0, 3.0, numpy.lib.format):
//   "\x93NUMPY", major, minor, header length (UInt16 LE in v1, UInt32 LE in v2/v3),
//   a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//   padded with spaces and '\n' (v3: UTF-8 header), then the raw elements.
// Supported: little-endian f4, f8, i8, i4 and u1. Fortran-order arrays are
// transposed into C order on reading.
#if canImport(Glibc)
import Glibc
#endif

public enum NPY {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY

    /// The npy descr of a dtype.
    public static func descr(_ d: DType) -> String {
        switch d {
        case .f32: return "<f4"
        case .f64: return "<f8"
        case .i64: return "<i8"
        case .i32: return "<i4"
        case .u8: return "|u1"
        }
    }

    static func dtype(descr: String, name: String) throws -> DType {
        switch descr {
        case "<f4": return .f32
        case "<f8": return .f64
        case "<i8": return .i64
        case "<i4": return .i32
        case "|u1", "<u1", ">u1", "u1": return .u8
        default:
            if descr.hasPrefix(">") { throw DDPMError("\(name): big-endian dtype '\(descr)' is not supported (use arr.astype(arr.dtype.newbyteorder('<')))") }
            throw DDPMError("\(name): unsupported dtype '\(descr)' (supported: <f4, <f8, <i8, <i4, |u1)")
        }
    }

    /// Parses a whole .npy file into a tensor (C order).
    public static func parse(_ bytes: [UInt8], name: String) throws -> Tensor {
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw DDPMError("\(name): not a .npy file (bad magic)") }
        let major = bytes[6]
        let headerLength: Int, start: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            start = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw DDPMError("\(name): truncated .npy header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            start = 12
        default:
            throw DDPMError("\(name): unsupported .npy version \(major).\(bytes[7]) (supported: 1, 2, 3)")
        }
        guard bytes.count >= start + headerLength else { throw DDPMError("\(name): truncated .npy header") }
        let text = String(decoding: bytes[start..<(start + headerLength)], as: UTF8.self)
        let (descr, fortran, shape) = try parseHeader(text, name: name)
        let dtype = try dtype(descr: descr, name: name)
        let count = shape.reduce(1, *)
        let dataStart = start + headerLength
        guard bytes.count - dataStart == count * dtype.byteSize else {
            throw DDPMError("\(name): shape \(shape) of \(descr) needs \(count * dtype.byteSize) data bytes but the file has \(bytes.count - dataStart)")
        }
        let t = bytes.withUnsafeBytes { Tensor.fromBytes(UnsafeRawBufferPointer(rebasing: $0[dataStart...]), dtype: dtype, shape: fortran ? shape.reversed() : shape) }
        return fortran ? reverseAxes(t) : t
    }

    /// Reverses the axes of a tensor: a Fortran-order array of shape S is the
    /// C-order array of shape reversed(S) with its axes reversed.
    public static func reverseAxes(_ t: Tensor) -> Tensor {
        let inShape = t.shape
        let nd = inShape.count
        if nd < 2 { return t }
        let outShape = Array(inShape.reversed())
        // No elements: nothing to move (and the strides of a shape like (0, 2^62, 2^62) overflow).
        if t.count == 0 { return Tensor(shape: outShape, storage: t.storage) }
        // C strides of the input, read in output-axis order.
        var inStrides = [Int](repeating: 1, count: nd)
        for k in stride(from: nd - 2, through: 0, by: -1) { inStrides[k] = inStrides[k + 1] * inShape[k + 1] }
        let strides = Array(inStrides.reversed())
        let n = t.count
        func permute<T>(_ a: [T]) -> [T] {
            if n == 0 { return [] }
            var out = [T]()
            out.reserveCapacity(n)
            var idx = [Int](repeating: 0, count: nd)
            var src = 0
            for _ in 0..<n {
                out.append(a[src])
                var k = nd - 1
                while k >= 0 {
                    idx[k] += 1
                    src += strides[k]
                    if idx[k] < outShape[k] { break }
                    src -= strides[k] * outShape[k]
                    idx[k] = 0
                    k -= 1
                }
            }
            return out
        }
        switch t.storage {
        case .f32(let a): return Tensor(permute(a), shape: outShape)
        case .f64(let a): return Tensor(permute(a), shape: outShape)
        case .i64(let a): return Tensor(permute(a), shape: outShape)
        case .i32(let a): return Tensor(permute(a), shape: outShape)
        case .u8(let a): return Tensor(permute(a), shape: outShape)
        }
    }

    /// Reads the three keys of the header dict.
    static func parseHeader(_ text: String, name: String) throws -> (descr: String, fortran: Bool, shape: [Int]) {
        let s = Array(text.unicodeScalars)
        func find(_ key: String) throws -> Int {
            let pattern = Array(("'" + key + "'").unicodeScalars)
            var i = 0
            while i + pattern.count <= s.count {
                if Array(s[i..<(i + pattern.count)]) == pattern {
                    var j = i + pattern.count
                    while j < s.count && s[j] == " " { j += 1 }
                    guard j < s.count && s[j] == ":" else { break }
                    j += 1
                    while j < s.count && s[j] == " " { j += 1 }
                    return j
                }
                i += 1
            }
            throw DDPMError("\(name): .npy header has no '\(key)' (header: \(text.trimmedSpaces()))")
        }
        var i = try find("descr")
        guard i < s.count, s[i] == "'" || s[i] == "\"" else { throw DDPMError("\(name): unsupported structured dtype in .npy header") }
        let q = s[i]
        i += 1
        var descr = ""
        while i < s.count && s[i] != q { descr.unicodeScalars.append(s[i]); i += 1 }
        i = try find("fortran_order")
        let fortran: Bool
        if text.unicodeScalars.count >= i + 4, String(String.UnicodeScalarView(s[i..<(i + 4)])) == "True" { fortran = true }
        else if text.unicodeScalars.count >= i + 5, String(String.UnicodeScalarView(s[i..<(i + 5)])) == "False" { fortran = false }
        else { throw DDPMError("\(name): .npy header has an invalid fortran_order") }
        i = try find("shape")
        guard i < s.count, s[i] == "(" else { throw DDPMError("\(name): .npy header has an invalid shape") }
        i += 1
        var shape: [Int] = []
        var current = ""
        while i < s.count && s[i] != ")" {
            let c = s[i]
            if c == "," {
                guard let v = Int(current.trimmedSpaces()), v >= 0 else { throw DDPMError("\(name): .npy header has an invalid shape") }
                shape.append(v); current = ""
            } else { current.unicodeScalars.append(c) }
            i += 1
        }
        guard i < s.count else { throw DDPMError("\(name): .npy header has an invalid shape") }
        let last = current.trimmedSpaces()
        if !last.isEmpty {
            guard let v = Int(last), v >= 0 else { throw DDPMError("\(name): .npy header has an invalid shape") }
            shape.append(v)
        }
        var total = 1
        for d in shape {
            // Every dimension below 2^40, as the stream format requires (even beside a zero).
            let (m, o) = total.multipliedReportingOverflow(by: d)
            guard !o, m < 1 << 40, d < 1 << 40 else { throw DDPMError("\(name): .npy shape \(shape) is too large") }
            total = m
        }
        return (descr, fortran, shape)
    }

    /// The header dict text for a C-order array.
    static func dict(_ dtype: DType, shape: [Int]) -> String {
        let dims = shape.count == 1 ? "\(shape[0])," : shape.map(String.init).joined(separator: ", ")
        return "{'descr': '\(descr(dtype))', 'fortran_order': False, 'shape': (\(dims)), }"
    }

    /// The complete preamble (magic, version, length, padded dict ending in '\n')
    /// for `dtype` and `shape`, at least `minLength` bytes long, a multiple of 64.
    /// Version 1 when the header fits in 65535 bytes, else version 2.
    public static func preamble(_ dtype: DType, shape: [Int], minLength: Int = 0) -> [UInt8] {
        var text = Array(dict(dtype, shape: shape).utf8)
        func size(_ fixed: Int) -> Int { (max(fixed + text.count + 1, minLength) + 63) / 64 * 64 }
        let v1 = size(10) - 10 <= 65535
        let fixed = v1 ? 10 : 12
        let total = size(fixed)
        while fixed + text.count + 1 < total { text.append(0x20) }
        text.append(0x0A)
        let n = text.count
        var out = magic + [v1 ? 1 : 2, 0]
        out += v1 ? [UInt8(n & 0xFF), UInt8(n >> 8)] : [UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 24)]
        return out + text
    }

    /// A whole .npy file for a tensor.
    public static func serialize(_ t: Tensor) -> [UInt8] {
        var out = preamble(t.dtype, shape: t.shape)
        t.withBytes { out.append(contentsOf: $0) }
        return out
    }
}

/// Writes one array to a .npy file as its rows arrive (bounded memory): the
/// header is reserved at the start and filled in with the final first-axis size.
/// To stdout (or a device or FIFO, which cannot seek) the file is finished in an
/// anonymous temporary file and then copied, so a failed run writes nothing there.
public final class NPYStreamWriter {
    enum Target {
        case file(AtomicFile)
        case scratch(ScratchFile, destination: BinaryOutput)
    }
    let target: Target
    public private(set) var dtype: DType?
    public private(set) var rowShape: [Int] = []
    public private(set) var rows = 0
    var reserved = 0

    public convenience init(path: String) throws { try self.init(output: .file(path)) }

    public init(output: BinaryOutput) throws {
        switch output {
        case .file(let p) where !AtomicFile.isSpecial(p): target = .file(try AtomicFile(path: p))
        default: target = .scratch(try ScratchFile(), destination: output)
        }
    }

    func append(_ raw: UnsafeRawBufferPointer) throws {
        switch target {
        case .file(let f): try f.append(raw)
        case .scratch(let f, _): try f.append(raw)
        }
    }

    /// Appends a tensor along axis 0; dtype and trailing shape must match earlier ones.
    public func append(_ t: Tensor, what: String) throws {
        guard !t.shape.isEmpty else { throw DDPMError("\(what): a scalar cannot be concatenated along axis 0") }
        let rest = Array(t.shape.dropFirst())
        if let d = dtype {
            guard d == t.dtype, rest == rowShape else {
                throw DDPMError("\(what): \(t.dtype.rawValue) \(t.shape) does not match the earlier \(d.rawValue) [N,\(rowShape.map(String.init).joined(separator: ","))] (to-npy concatenates along axis 0)")
            }
        } else {
            dtype = t.dtype
            rowShape = rest
            // Room for any first-axis size up to 15 digits.
            reserved = NPY.preamble(t.dtype, shape: [999_999_999_999_999] + rest).count
            try [UInt8](repeating: 0x20, count: reserved).withUnsafeBytes { try append($0) }
        }
        try t.withBytes { try append($0) }
        rows += t.shape[0]
    }

    /// Writes the header and renames the file into place (or copies it to its destination).
    public func finish() throws {
        guard let d = dtype else { throw DDPMError("no tensor to write") }
        let head = NPY.preamble(d, shape: [rows] + rowShape, minLength: reserved)
        precondition(head.count == reserved)
        switch target {
        case .file(let f):
            try f.write(head, at: 0)
            try f.commit()
        case .scratch(let f, let destination):
            try f.write(head, at: 0)
            if case .file(let p) = destination {
                let fd = open(p, O_WRONLY)
                guard fd >= 0 else { throw DDPMError("cannot open \(p): \(String(cString: strerror(errno)))") }
                defer { close(fd) }
                try f.copy(to: fd, name: p)
            } else {
                try f.copy(to: 1, name: "stdout")
            }
        }
    }
}

extension String {
    func trimmedSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\n" || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\n" || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
