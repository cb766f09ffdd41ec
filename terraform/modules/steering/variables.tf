variable "regions" {
  description = "The decoded regions file: yamldecode(file(\".../regions.yaml\"))."
  type        = any

  validation {
    condition = alltrue(flatten([
      for r in var.regions.regions : [
        for code in try(coalesce(r.cloudflare_regions, []), []) :
        contains(["WNAM", "ENAM", "WEU", "EEU", "NSAM", "SSAM", "OC", "ME", "NAF", "SAF", "SAS", "SEAS", "NEAS"], code)
      ]
    ]))
    error_message = "Every cloudflare_regions entry must be one of Cloudflare's 13 region codes (WNAM ENAM WEU EEU NSAM SSAM OC ME NAF SAF SAS SEAS NEAS)."
  }

  validation {
    condition = alltrue(flatten([
      for r in var.regions.regions : [
        for code in try(coalesce(r.countries, []), []) : can(regex("^[A-Z]{2}$", code))
      ]
    ]))
    error_message = "Every countries entry must be an upper-case ISO 3166-1 alpha-2 code."
  }

  validation {
    condition     = length([for r in var.regions.regions : r if r.role == "central"]) == 1
    error_message = "Exactly one region must have role: central."
  }
}
