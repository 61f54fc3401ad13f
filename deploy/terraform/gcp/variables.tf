variable "project_id" {
  description = "Google Cloud project that holds the three clusters, the VPC and the DNS records."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid project id."
  }
}

variable "cluster_name" {
  description = "Name of the Meridian cluster; prefixes every resource."
  type        = string
  default     = "meridian"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.cluster_name))
    error_message = "cluster_name must be 2 to 21 characters of [a-z0-9-], starting with a letter."
  }
}

variable "regions" {
  description = "Regions of the cluster keyed by GCP region name (also the Meridian region id): a /16 each that no other region uses, and whether it is the witness. Exactly two data regions and one witness."
  type = map(object({
    cidr    = string
    witness = bool
  }))
  default = {
    "us-east1"                = { cidr = "10.10.0.0/16", witness = false }
    "europe-west1"            = { cidr = "10.20.0.0/16", witness = false }
    "northamerica-northeast1" = { cidr = "10.30.0.0/16", witness = true }
  }

  validation {
    condition     = length(var.regions) == 3 && length([for r in values(var.regions) : r if r.witness]) == 1
    error_message = "Give three regions, exactly one of them the witness."
  }

  validation {
    condition     = alltrue([for r in values(var.regions) : can(cidrnetmask(r.cidr)) && endswith(r.cidr, "/16")])
    error_message = "Every region needs a /16 CIDR."
  }
}

variable "release_channel" {
  description = "GKE release channel for all three clusters."
  type        = string
  default     = "REGULAR"

  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE"], var.release_channel)
    error_message = "release_channel must be RAPID, REGULAR or STABLE."
  }
}

variable "data_machine_type" {
  description = "Machine type of the data regions' nodes (a Meridian pod requests 2 vCPU and 4 GiB)."
  type        = string
  default     = "n2-standard-4"
}

variable "witness_machine_type" {
  description = "Machine type of the witness region's nodes."
  type        = string
  default     = "e2-standard-2"
}

variable "master_authorized_networks" {
  description = "Networks allowed to reach the GKE control planes (private endpoint; add a VPN or bastion range)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for c in values(var.master_authorized_networks) : can(cidrnetmask(c)) && c != "0.0.0.0/0"])
    error_message = "master_authorized_networks values must be CIDR blocks, and not 0.0.0.0/0."
  }
}

variable "rbac_security_group" {
  description = "Google Group for GKE RBAC (gke-security-groups@<your domain>)."
  type        = string

  validation {
    condition     = can(regex("^gke-security-groups@", var.rbac_security_group))
    error_message = "GKE requires the group to be named gke-security-groups@<domain>."
  }
}

variable "public_zone" {
  description = "Existing public Cloud DNS managed zone (its resource name) that gets the client names."
  type        = string
}

variable "service_name" {
  description = "Label under the public zone that clients connect to; geo-routed to the nearest healthy data region."
  type        = string
  default     = "meridian"

  validation {
    condition     = can(regex("^[a-z0-9-]{1,63}$", var.service_name))
    error_message = "service_name must be one DNS label."
  }
}

variable "private_zone_name" {
  description = "Private DNS name, visible in the VPC, that holds repl.<region> for the peer links."
  type        = string
  default     = "meridian.internal"
}

variable "dns_ttl_seconds" {
  description = "TTL of the geo-routed record; with the health check it bounds how long clients keep resolving to a fenced region."
  type        = number
  default     = 30

  validation {
    condition     = var.dns_ttl_seconds >= 5 && var.dns_ttl_seconds <= 300
    error_message = "dns_ttl_seconds must be between 5 and 300."
  }
}

variable "client_cidrs" {
  description = "Networks allowed to the public TLS port 7389 (mirrors loadBalancerSourceRanges in the overlays)."
  type        = list(string)

  validation {
    condition     = length(var.client_cidrs) > 0 && alltrue([for c in var.client_cidrs : can(cidrnetmask(c))])
    error_message = "client_cidrs must be a non-empty list of CIDR blocks."
  }
}

variable "labels" {
  description = "Labels added to every resource."
  type        = map(string)
  default     = {}
}
