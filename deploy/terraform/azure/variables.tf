variable "subscription_id" {
  description = "Azure subscription that holds the three clusters."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.subscription_id))
    error_message = "subscription_id must be a GUID."
  }
}

variable "tenant_id" {
  description = "Entra ID tenant whose users and groups sign in to the clusters."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.tenant_id))
    error_message = "tenant_id must be a GUID."
  }
}

variable "admin_group_object_ids" {
  description = "Entra ID groups that get cluster-admin (Azure RBAC for Kubernetes); local accounts are disabled."
  type        = list(string)

  validation {
    condition     = length(var.admin_group_object_ids) > 0
    error_message = "Give at least one admin group: with local accounts disabled nobody else can administer the clusters."
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
  description = "Regions of the cluster keyed by Azure location (also the Meridian region id): a /16 each that no other region uses, and whether it is the witness. Exactly two data regions and one witness."
  type = map(object({
    cidr    = string
    witness = bool
  }))
  default = {
    "eastus2"       = { cidr = "10.10.0.0/16", witness = false }
    "westeurope"    = { cidr = "10.20.0.0/16", witness = false }
    "canadacentral" = { cidr = "10.30.0.0/16", witness = true }
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

variable "kubernetes_version" {
  description = "AKS Kubernetes minor version; patches follow the automatic upgrade channel."
  type        = string
  default     = "1.34"

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.34."
  }
}

variable "data_vm_size" {
  description = "VM size of the data regions' Meridian nodes (needs a local temp disk for ephemeral OS disks)."
  type        = string
  default     = "Standard_D4ds_v5"
}

variable "witness_vm_size" {
  description = "VM size of the witness region's Meridian nodes."
  type        = string
  default     = "Standard_D2ds_v5"
}

variable "client_cidrs" {
  description = "Networks allowed to the public TLS port 7389 (mirrors loadBalancerSourceRanges in the overlays)."
  type        = list(string)

  validation {
    condition     = length(var.client_cidrs) > 0 && alltrue([for c in var.client_cidrs : can(cidrnetmask(c)) && c != "0.0.0.0/0"])
    error_message = "client_cidrs must be a non-empty list of CIDR blocks, and not 0.0.0.0/0."
  }
}

variable "traffic_manager_dns_name" {
  description = "Relative name of the Traffic Manager profile: <name>.trafficmanager.net (globally unique)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.traffic_manager_dns_name))
    error_message = "traffic_manager_dns_name must be a DNS label."
  }
}

variable "public_dns_zone" {
  description = "Existing Azure DNS zone for the client name (CNAME to Traffic Manager): its name and resource group."
  type = object({
    name                = string
    resource_group_name = string
  })
}

variable "service_name" {
  description = "Label in public_dns_zone that clients connect to."
  type        = string
  default     = "meridian"

  validation {
    condition     = can(regex("^[a-z0-9-]{1,63}$", var.service_name))
    error_message = "service_name must be one DNS label."
  }
}

variable "private_zone_name" {
  description = "Private DNS zone, linked to the three VNets, that holds repl.<region> for the peer links."
  type        = string
  default     = "meridian.internal"
}

variable "dns_ttl_seconds" {
  description = "TTL of the Traffic Manager answers; with the probe settings it bounds how long clients keep resolving to a fenced region."
  type        = number
  default     = 30

  validation {
    condition     = var.dns_ttl_seconds >= 0 && var.dns_ttl_seconds <= 300
    error_message = "dns_ttl_seconds must be between 0 and 300."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
