package manifest

import "encoding/json"

// jsonRaw is a raw JSON value.
type jsonRaw = json.RawMessage

// jsonUnmarshal is plain, lenient JSON decoding, used only to look at a
// document before its kind is known. Typed objects go through decoder.
func jsonUnmarshal(data []byte, v any) error {
	if len(data) == 0 {
		return nil
	}
	return json.Unmarshal(data, v)
}
