package keystore

import (
	"container/list"
	"crypto"
	"sync"
)

// signerCache is a small LRU of signers keyed by credential ID. Reusing the
// same *ecdsa.PrivateKey matters: crypto/ecdsa caches its precomputed key per
// pointer, so a fresh parse per signature would be several times slower.
// Each item remembers the index entry it was built from; a lookup with a
// different entry (the credential was replaced, deleted or wiped) misses.
type signerCache struct {
	mu   sync.Mutex
	size int
	ll   *list.List
	m    map[string]*list.Element
}

type cacheItem struct {
	id string
	e  *entry
	sg crypto.Signer
}

func newSignerCache(size int) *signerCache {
	return &signerCache{size: size, ll: list.New(), m: make(map[string]*list.Element)}
}

func (sc *signerCache) get(id []byte, e *entry) crypto.Signer {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	el := sc.m[string(id)]
	if el == nil {
		return nil
	}
	it := el.Value.(*cacheItem)
	if it.e != e {
		sc.ll.Remove(el)
		delete(sc.m, it.id)
		return nil
	}
	sc.ll.MoveToFront(el)
	return it.sg
}

func (sc *signerCache) put(id []byte, e *entry, sg crypto.Signer) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if el := sc.m[string(id)]; el != nil {
		it := el.Value.(*cacheItem)
		it.e, it.sg = e, sg
		sc.ll.MoveToFront(el)
		return
	}
	it := &cacheItem{id: string(id), e: e, sg: sg}
	sc.m[it.id] = sc.ll.PushFront(it)
	for sc.ll.Len() > sc.size {
		old := sc.ll.Back()
		sc.ll.Remove(old)
		delete(sc.m, old.Value.(*cacheItem).id)
	}
}

func (sc *signerCache) drop(id []byte) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if el := sc.m[string(id)]; el != nil {
		sc.ll.Remove(el)
		delete(sc.m, string(id))
	}
}

func (sc *signerCache) clear() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.ll.Init()
	clear(sc.m)
}

func (sc *signerCache) has(id []byte) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.m[string(id)] != nil
}

func (sc *signerCache) len() int {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.ll.Len()
}
