import Testing
import TroupeStore

@Suite("Actor keys")
struct ActorKeyTests {
    @Test func aPathIsTheSystemThenTheNameWhichMayHoldSlashes() {
        #expect(ActorKey(path: "shop/cart-1") == ActorKey(system: "shop", name: "cart-1"))
        #expect(ActorKey(path: "shop/carts/1") == ActorKey(system: "shop", name: "carts/1"))
        #expect(ActorKey(path: "shop//1") == ActorKey(system: "shop", name: "/1"))
        let key = ActorKey(system: "shop", name: "cart/é")
        #expect(ActorKey(path: key.description) == key)
    }

    @Test func aPathWithoutBothPartsIsRefused() {
        for path in ["", "shop", "shop/", "/cart", "/"] {
            #expect(ActorKey(path: path) == nil, "\(path)")
        }
    }
}
