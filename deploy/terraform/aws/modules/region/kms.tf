data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
}

# Envelope encryption of Kubernetes Secrets in etcd.
data "aws_iam_policy_document" "eks_key" {
  # checkov:skip=CKV_AWS_109: In a key policy "*" is this key only; the account root administers it, as in the KMS default policy.
  # checkov:skip=CKV_AWS_111: In a key policy "*" is this key only; write access is limited to the account and to CloudWatch Logs of this account.
  # checkov:skip=CKV_AWS_356: In a key policy "*" is this key only; a key policy cannot name the key's own ARN before the key exists.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }
}

resource "aws_kms_key" "eks" {
  description             = "${local.name} EKS secrets encryption"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.eks_key.json
}

resource "aws_kms_alias" "eks" {
  name          = "alias/${local.name}-eks"
  target_key_id = aws_kms_key.eks.key_id
}

# CloudWatch Logs (control plane and flow logs) encrypts with this key.
data "aws_iam_policy_document" "logs_key" {
  # checkov:skip=CKV_AWS_109: In a key policy "*" is this key only; the account root administers it, as in the KMS default policy.
  # checkov:skip=CKV_AWS_111: In a key policy "*" is this key only; write access is limited to the account and to CloudWatch Logs of this account.
  # checkov:skip=CKV_AWS_356: In a key policy "*" is this key only; a key policy cannot name the key's own ARN before the key exists.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }
  statement {
    sid = "CloudWatchLogsUse"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:*"]
    }
  }
}

resource "aws_kms_key" "logs" {
  description             = "${local.name} log encryption"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.logs_key.json
}

resource "aws_kms_alias" "logs" {
  name          = "alias/${local.name}-logs"
  target_key_id = aws_kms_key.logs.key_id
}
