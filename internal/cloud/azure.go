package cloud

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

const azureHint = "an Azure Service Tags file (ServiceTags_Public_*.json)"

// azureCloudTag is the service tag for all of Azure's public cloud address
// space; "AzureCloud.<region>" tags split it by region. The other tags
// (AzureFrontDoor, Storage, ...) are services inside that space and say
// nothing more about where a client is, so they are not read.
const azureCloudTag = "AzureCloud"

// azureFile is the weekly Service Tags download. changeNumber and cloud
// are required: they identify the format and version.
type azureFile struct {
	ChangeNumber *json.Number       `json:"changeNumber"`
	Cloud        *string            `json:"cloud"`
	Values       *[]json.RawMessage `json:"values"`
}

// azureName is decoded first for every value, so that the address lists
// of the thousands of tags that are not read are scanned but not built.
type azureName struct {
	Name *string `json:"name"`
}

type azureValue struct {
	Properties *struct {
		Region          *string   `json:"region"`
		AddressPrefixes *[]string `json:"addressPrefixes"`
	} `json:"properties"`
}

// ParseAzure reads an Azure Service Tags file. It takes the AzureCloud.<region>
// tags, with the region from properties.region (or the tag's suffix when that
// is empty), and the cloud-wide AzureCloud tag with region "", so that every
// Azure address matches a provider-level rule even where Microsoft has not
// put it in a regional tag. A prefix in both gets its region: the regional
// entry wins whatever the order in the file.
func ParseAzure(r io.Reader) ([]Range, error) {
	ranges, _, err := parseReader("azure", parseAzure, r)
	return ranges, err
}

func parseAzure(data []byte) ([]Range, string, error) {
	const provider = "azure"
	var f azureFile
	if err := decodeJSON(provider, "", data, &f); err != nil {
		return nil, "", err
	}
	switch {
	case f.ChangeNumber == nil:
		return nil, "", missingTop(provider, "changeNumber", azureHint)
	case f.Cloud == nil:
		return nil, "", missingTop(provider, "cloud", azureHint)
	case f.Values == nil:
		return nil, "", missingTop(provider, "values", azureHint)
	}

	c := newCollector(0, azurePrefer)
	for i, raw := range *f.Values {
		pos := fmt.Sprintf("values[%d]", i)
		var n azureName
		if err := decodeJSON(provider, pos, raw, &n); err != nil {
			return nil, "", err
		}
		if n.Name == nil {
			return nil, "", missingKey(provider, pos, "name")
		}
		suffix, regional := strings.CutPrefix(*n.Name, azureCloudTag+".")
		if !regional && *n.Name != azureCloudTag {
			continue
		}
		var v azureValue
		if err := decodeJSON(provider, pos, raw, &v); err != nil {
			return nil, "", err
		}
		switch {
		case v.Properties == nil:
			return nil, "", missingKey(provider, pos, "properties")
		case v.Properties.AddressPrefixes == nil:
			return nil, "", missingKey(provider, pos+".properties", "addressPrefixes")
		}
		region := ""
		if regional {
			region = suffix
			if v.Properties.Region != nil && *v.Properties.Region != "" {
				region = *v.Properties.Region
			}
		}
		for j, s := range *v.Properties.AddressPrefixes {
			p, err := parsePrefix(s, anyFamily)
			if err != nil {
				return nil, "", fmt.Errorf("%s: %s.properties.addressPrefixes[%d]: %w", provider, pos, j, err)
			}
			c.add(Range{Provider: provider, Region: region, Service: azureCloudTag, Prefix: p})
		}
	}
	if len(c.ranges) == 0 {
		return nil, "", noPrefixes(provider, azureHint)
	}
	published := fmt.Sprintf("changeNumber=%s cloud=%s", *f.ChangeNumber, *f.Cloud)
	return c.ranges, published, nil
}

// azurePrefer lets a regional entry replace the cloud-wide one for the
// same prefix; between two entries of equal standing the first stays.
func azurePrefer(kept, next Range) bool {
	return kept.Region == "" && next.Region != ""
}
