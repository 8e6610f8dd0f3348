import Foundation
import Testing
import TroupeProto

@testable import Troupe

/// Strings skip Foundation's JSON coders on the invocation path; what they produce and accept
/// must stay exactly what Foundation produces and accepts.
@Suite("Payload coding of strings")
struct PayloadCodingTests {
    @Test(arguments: [
        "", "plain", String(repeating: "x", count: 62), "naïve café 🎭", "with \"quotes\"", "a/b", "back\\slash",
        "tab\there", "line\nbreak", "\u{7F}", "\u{2028}",
    ])
    func stringsAreCodedAsFoundationCodesThem(_ text: String) throws {
        let payload = try PayloadCoding.encode(text)
        #expect(payload.typeURL == PayloadCoding.jsonTypeURL)
        #expect(payload.value == (try JSONEncoder().encode(text)))
        #expect(try PayloadCoding.decode(String.self, from: payload) == text)
    }

    @Test(arguments: [
        "\"a\\nb\"", " \"padded\" ", "\"\\u00e9\"", "\"unterminated", "\"", "42", "null", "\"a\"\"b\"",
        "\"raw\u{01}control\"",
    ])
    func jsonOtherThanAPlainStringDecodesAsFoundationDecodesIt(_ json: String) {
        expectSameAsFoundation(Data(json.utf8))
    }

    @Test func invalidUTF8DecodesAsFoundationDecodesIt() {
        expectSameAsFoundation(Data([0x22, 0x61, 0xFF, 0x62, 0x22]))
        expectSameAsFoundation(Data([0x22, 0xC3, 0x22]))
    }

    private func expectSameAsFoundation(_ json: Data, sourceLocation: SourceLocation = #_sourceLocation) {
        var payload = WirePayload()
        payload.typeURL = PayloadCoding.jsonTypeURL
        payload.value = json
        let foundation = try? JSONDecoder().decode(String.self, from: json)
        let ours = try? PayloadCoding.decode(String.self, from: payload)
        #expect(ours == foundation, "\(String(decoding: json, as: UTF8.self))", sourceLocation: sourceLocation)
    }
}
