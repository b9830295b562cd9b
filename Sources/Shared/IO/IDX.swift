// IDX files (the MNIST format, LeCun et al.): magic 00 00 TT NN, where TT is the
// element type and NN the number of dimensions, then NN big-endian UInt32 sizes,
// then the elements in C order, big-endian. Gzip-compressed files are detected
// by their magic 1f 8b and inflated first.

public struct IDXArray: Sendable {
    public enum ElementType: UInt8, Sendable {
        case u8 = 0x08, i8 = 0x09, i16 = 0x0B, i32 = 0x0C, f32 = 0x0D, f64 = 0x0E
        var size: Int {
            switch self {
            case .u8, .i8: return 1
            case .i16: return 2
            case .i32, .f32: return 4
            case .f64: return 8
            }
        }
    }
    public var type: ElementType
    public var dims: [Int]
    /// The element bytes (big-endian), C order; `dims.reduce(1, *) * type.size` of them.
    public var bytes: [UInt8]

    public var count: Int { dims.reduce(1, *) }

    /// Element i as a Double.
    @inline(__always)
    public func value(_ i: Int) -> Double {
        switch type {
        case .u8: return Double(bytes[i])
        case .i8: return Double(Int8(bitPattern: bytes[i]))
        case .i16: return Double(Int16(bitPattern: UInt16(bytes[2 * i]) << 8 | UInt16(bytes[2 * i + 1])))
        case .i32: return Double(Int32(bitPattern: be32(4 * i)))
        case .f32: return Double(Float(bitPattern: be32(4 * i)))
        case .f64:
            var v: UInt64 = 0
            for k in 0..<8 { v = v << 8 | UInt64(bytes[8 * i + k]) }
            return Double(bitPattern: v)
        }
    }

    @inline(__always)
    func be32(_ o: Int) -> UInt32 {
        UInt32(bytes[o]) << 24 | UInt32(bytes[o + 1]) << 16 | UInt32(bytes[o + 2]) << 8 | UInt32(bytes[o + 3])
    }
}

public enum IDX {
    /// Parses IDX bytes (gzip or plain). `name` appears in every error.
    public static func parse(_ input: [UInt8], name: String) throws -> IDXArray {
        let raw = Gzip.isGzip(input) ? try Gzip.decompress(input, what: name) : input
        guard raw.count >= 4 else { throw DDPMError("\(name): too short for an IDX file (\(raw.count) bytes)") }
        guard raw[0] == 0, raw[1] == 0 else {
            throw DDPMError("\(name): bad IDX magic \(hex(raw[0..<4])) (expected 00 00 <type> <ndims>)")
        }
        guard let type = IDXArray.ElementType(rawValue: raw[2]) else {
            throw DDPMError("\(name): unknown IDX element type 0x\(String(raw[2], radix: 16))")
        }
        let nd = Int(raw[3])
        guard nd >= 1 else { throw DDPMError("\(name): IDX file with 0 dimensions") }
        let headerSize = 4 + 4 * nd
        guard raw.count >= headerSize else { throw DDPMError("\(name): truncated IDX header") }
        var dims: [Int] = []
        var count = 1
        for k in 0..<nd {
            let o = 4 + 4 * k
            let d = Int(raw[o]) << 24 | Int(raw[o + 1]) << 16 | Int(raw[o + 2]) << 8 | Int(raw[o + 3])
            dims.append(d)
            let (c, overflow) = count.multipliedReportingOverflow(by: d)   // d < 2^32, count < 2^40: may pass 2^63
            count = c
            guard !overflow, count < 1 << 40 else { throw DDPMError("\(name): IDX dimensions \(dims) are too large") }
        }
        let expected = headerSize + count * type.size
        guard raw.count == expected else {
            throw DDPMError("\(name): IDX dimensions \(dims) need \(expected) bytes but the file has \(raw.count)")
        }
        return IDXArray(type: type, dims: dims, bytes: Array(raw[headerSize...]))
    }

    /// Serialises an IDX array (plain, not gzipped).
    public static func serialize(_ a: IDXArray) -> [UInt8] {
        var out: [UInt8] = [0, 0, a.type.rawValue, UInt8(a.dims.count)]
        for d in a.dims { out += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] }
        return out + a.bytes
    }

    /// Samples `range` of an image array as F32: u8 pixels scaled to [-1, 1] by
    /// x = p / 255 * 2 - 1; other element types keep their values.
    /// The sample shape is dims[1...]: idx3 [N,H,W] -> [B,1,H,W]; idx2 [N,D] -> [B,D].
    public static func images(_ a: IDXArray, range: Range<Int>) -> Tensor {
        let per = a.dims.dropFirst().reduce(1, *)
        let n = range.count
        var out = [Float](repeating: 0, count: n * per)
        let start = range.lowerBound * per
        out.withUnsafeMutableBufferPointer { dst in
            if a.type == .u8 {
                a.bytes.withUnsafeBufferPointer { src in
                    for i in 0..<(n * per) { dst[i] = Pixels.unit(Float(src[start + i]), maxValue: 255) }
                }
            } else {
                for i in 0..<(n * per) { dst[i] = Float(a.value(start + i)) }
            }
        }
        var shape = [n] + Array(a.dims.dropFirst())
        if a.dims.count == 3 { shape = [n, 1, a.dims[1], a.dims[2]] }
        return Tensor(out, shape: shape)
    }

    /// Labels `range` of a 1-D integer array as I64.
    public static func labels(_ a: IDXArray, range: Range<Int>) -> Tensor {
        Tensor(range.map { Int64(a.value($0)) }, shape: [range.count])
    }

    static func hex(_ b: ArraySlice<UInt8>) -> String {
        b.map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: " ")
    }
}
